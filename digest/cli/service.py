"""`digest serve`, `digest web` and `digest worker`: the long-running processes."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Annotated

import typer

from digest.cli.common import State, app

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
    processes: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=64,
            help="worker processes, each claiming, rendering and sending its own batches "
            "(default: delivery.processes; 0: one per core)",
        ),
    ] = None,
) -> None:
    """Send from the shared outbox until stopped; run any number on PostgreSQL."""
    from digest.processes import open_store_patiently, process_count, run_processes
    from digest.scheduler import run_worker

    state: State = ctx.obj
    settings = state.settings
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.warning("signal %d: finishing the messages in flight", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # Opened (and migrated) here first, so that the processes never race to migrate.
    store = open_store_patiently(settings, stop)
    count = process_count(settings, processes)
    owner = name or settings.delivery.worker_name or None
    bad = 0
    try:
        if count == 1:
            total = run_worker(settings, store, once=once, plan=plan, owner=owner, stop=stop)
        else:
            store.close()
            total, bad = run_processes(
                settings,
                count,
                once=once,
                plan=plan,
                owner=owner,
                stop=stop,
                log_options=state.log_options,
            )
    finally:
        store.close()
    print(
        f"sent {total.sent}, deferred {total.deferred}, failed {total.failed}, "
        f"unknown {total.unknown}"
        + (" (daily cap reached)" if total.capped else "")
        + (f" ({count} processes)" if count > 1 else "")
    )
    if bad:
        print(f"error: {bad} worker process(es) ended with an error (see the log)", file=sys.stderr)
        raise typer.Exit(1)
