"""`digest serve`, `digest web` and `digest worker`: the long-running processes."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli.common import State, app
from digest.errors import StoreError

if TYPE_CHECKING:
    from digest.store import Store

log = logging.getLogger(__name__)


@app.command()
def serve(
    ctx: typer.Context,
    web: Annotated[
        bool, typer.Option("--web/--no-web", help="also serve the subscriber web app")
    ] = True,
) -> None:
    """Run the service: the web app, fetching on a cron, and each digest at its local hour."""
    from digest.scheduler import serve as run_scheduler

    state: State = ctx.obj
    store = state.store()
    server = None
    thread = None
    if web:
        from digest.web.server import make_server

        server = make_server(state.settings, store=store)
        thread = threading.Thread(target=server.run, name="web", daemon=True)
        thread.start()
        print(
            f"web app on http://{server.config.host}:{server.config.port} "
            f"(public address {state.settings.web.base_url})",
            flush=True,
        )
    try:
        run_scheduler(state.settings, store)
    finally:
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=10)
        store.close()


@app.command("web")
def web_command(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="listen address (default: web.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: web.port)")] = None,
) -> None:
    """Serve only the subscriber web app (sign-up, preferences, unsubscribe, archive)."""
    from digest.web.server import run

    state: State = ctx.obj
    state.store().close()  # a wrong database or pending migrations stop here, clearly
    run(state.settings, host, port)


@app.command()
def worker(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="send what is ready now, then exit")] = False,
    plan: Annotated[
        bool, typer.Option("--plan/--no-plan", help="also plan and rank the digests that are due")
    ] = True,
    name: Annotated[
        str | None,
        typer.Option(help="a stable name unique to this worker (default: delivery.worker_name)"),
    ] = None,
) -> None:
    """Send from the shared outbox until stopped; run any number on PostgreSQL."""
    from digest.scheduler import run_worker

    state: State = ctx.obj
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.warning("signal %d: finishing the messages in flight", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    store = _open_store_patiently(state, stop)
    try:
        total = run_worker(state.settings, store, once=once, plan=plan, owner=name, stop=stop)
    finally:
        store.close()
    print(
        f"sent {total.sent}, deferred {total.deferred}, failed {total.failed}, "
        f"unknown {total.unknown}" + (" (daily cap reached)" if total.capped else "")
    )


def _open_store_patiently(state: State, stop: threading.Event, wait: float = 60.0) -> Store:
    """A worker started while the database restarts (or its first connection is cut) waits
    for it, up to ``wait`` seconds, rather than exiting; a wrong setting still fails at once."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return state.store()
        except StoreError as exc:
            if "cannot use the database" not in str(exc) or time.monotonic() > deadline:
                raise
            log.warning("database not ready (%s); retrying", exc)
            if stop.wait(1.0):
                raise
