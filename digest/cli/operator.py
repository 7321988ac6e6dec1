"""What an operator runs: `digest db`, `digest outbox`, `digest bounce`, `digest status`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from digest.cli.common import State, app, console, db_app, outbox_app, wide_console
from digest.domain.states import DeliveryState
from digest.errors import StoreError, ValidationError

if TYPE_CHECKING:
    from digest.app.health import StatusReport

EX_TEMPFAIL = 75  # sysexits.h: a mail system retries a pipe that exits with it
STATUS_OK = 0
STATUS_ATTENTION = 1


# -- db ---------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply pending migrations (safe to run again: a no-op when up to date)."""
    applied, current = _migrations(ctx.obj, apply=True)
    if applied:
        console.print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        console.print(f"already up to date (revision {current})")


@db_app.command("status")
def db_status(ctx: typer.Context) -> None:
    """Show the schema revision and any pending migrations."""
    pending, current = _migrations(ctx.obj, apply=False)
    console.print(f"revision: {current or 'none (empty database)'}")
    if pending:
        console.print(f"pending: {', '.join(pending)} (run `digest db upgrade`)")
        raise typer.Exit(1)
    console.print("pending: none")


def _migrations(state: State, apply: bool) -> tuple[list[str], str | None]:
    """The migrations applied now (``apply``) or still pending, and the revision after."""
    with state.opened(migrate=False) as store:
        migrations = store.upgrade() if apply else store.pending_migrations()
        return migrations, store.current_revision()


# -- the outbox -------------------------------------------------------------------------


@outbox_app.command("status")
def outbox_status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """How many deliveries are in each state."""
    from digest.app import operator

    state: State = ctx.obj
    with state.opened() as store:
        counts = operator.counts(store)
    if as_json:
        print(json.dumps(counts))
        return
    table = Table("state", "deliveries", title="outbox")
    for name, count in counts.items():
        table.add_row(name, str(count))
    console.print(table)


@outbox_app.command("list")
def outbox_list(
    ctx: typer.Context,
    status: Annotated[str, typer.Option(help=f"one of: {', '.join(DeliveryState)}")] = "failed",
    limit: Annotated[int, typer.Option(min=1, help="most rows to show")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Deliveries in one state, newest first, with their last error or reply."""
    from digest.app import operator

    state: State = ctx.obj
    with state.opened() as store:
        rows = operator.listing(store, status, limit)
    data = [
        {
            "id": row.public_id,
            "email": row.email,
            "date": row.local_date.isoformat(),
            "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at.isoformat(timespec="seconds")
            if row.next_attempt_at
            else None,
            "detail": row.detail,
        }
        for row in rows
    ]
    if as_json:
        for item in data:
            print(json.dumps(item, ensure_ascii=False))
        return
    table = Table("id", "email", "date", "attempts", "next attempt", "detail", title=status)
    for item in data:
        table.add_row(
            str(item["id"])[:12],
            str(item["email"]),
            str(item["date"]),
            str(item["attempts"]),
            str(item["next_attempt_at"] or "—"),
            str(item["detail"] or ""),
        )
    wide_console().print(table)


@outbox_app.command("retry")
def outbox_retry(
    ctx: typer.Context,
    ids: Annotated[
        list[str] | None, typer.Argument(help="delivery ids (from `digest outbox list`)")
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(help="every delivery in this state: unknown, failed or deferred"),
    ] = None,
) -> None:
    """Send the chosen unknown, failed or deferred deliveries again at the next claim."""
    from digest.app import operator

    state: State = ctx.obj
    with state.opened() as store:
        count = operator.retry(store, datetime.now(UTC), status or [], ids or [])
    print(f"{count} deliveries queued again")


@app.command()
def bounce(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(help="a bounce message (RFC 3464 report) file, or - for stdin")
    ] = "-",
    recipient: Annotated[
        str | None,
        typer.Option(help="the address the bounce was delivered to (the VERP address)"),
    ] = None,
) -> None:
    """Record a bounce report (exit 0), or say why it was not understood (exit 1); exit 75
    when the database is unavailable, so a mail server piping into it tries again."""
    from digest.app.operator import ingest_bounce
    from digest.delivery.bounces import MAX_REPORT_BYTES

    state: State = ctx.obj
    if source == "-":
        raw = sys.stdin.buffer.read(MAX_REPORT_BYTES + 1)
    else:
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            raise ValidationError(f"cannot read {source}: {exc.strerror}") from None
    try:
        with state.opened() as store:
            result = ingest_bounce(state.settings, store, raw, envelope_recipient=recipient)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(EX_TEMPFAIL) from None
    who = f" {result.email}" if result.email else ""
    status = f" {result.status}" if result.status else ""
    print(f"{result.outcome}:{who}{status} ({result.kind or '-'}): {result.detail}")
    if not result.accepted:
        raise typer.Exit(1)


# -- status -----------------------------------------------------------------------------


@app.command("status")
def status_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object, for machines")] = False,
    max_queue_minutes: Annotated[
        float,
        typer.Option(min=0, help="a digest ready for longer than this needs attention"),
    ] = 30.0,
    max_fetch_hours: Annotated[
        float,
        typer.Option(min=0, help="an enabled source with no good fetch this long needs attention"),
    ] = 24.0,
) -> None:
    """Did the last fetch work, did today's mail go out, is anything stuck?

    Shows the last fetch of each source, the digests planned in the last 24 hours by state,
    the queue (how many wait, since when), and subscribers by status. Exit codes: 0 all well;
    1 something needs attention (each named on a line starting "attention:"); 2 a bad option
    or setting; 3 the database is unreachable or its schema is behind. Changes nothing (it
    does not apply migrations), so it can run from cron or a monitoring check.
    """
    from digest.app import health
    from digest.store import sqlite_file

    state: State = ctx.obj
    missing = sqlite_file(state.settings.database.url)
    if missing is not None and not missing.exists():
        # Not "behind by N migrations": there is nothing yet (and status creates nothing).
        print(
            f"error: no database yet at {missing}: `make demo` (or `digest demo`) makes one "
            "with the bundled sample; `digest db upgrade` an empty one",
            file=sys.stderr,
        )
        raise typer.Exit(3)
    with state.opened(migrate=False) as store:
        found = health.status(
            store,
            state.settings,
            datetime.now(UTC),
            max_queue_age=timedelta(minutes=max_queue_minutes),
            max_fetch_age=timedelta(hours=max_fetch_hours),
        )
    if as_json:
        print(json.dumps(found.as_json(), ensure_ascii=False))
    else:
        _print_status(found)
    raise typer.Exit(STATUS_ATTENTION if found.problems else STATUS_OK)


def _print_status(found: StatusReport) -> None:
    from digest.app.health import ago

    now = found.now

    def when(moment: datetime | None) -> str:
        if moment is None:
            return "never"
        return f"{moment.strftime('%Y-%m-%d %H:%M')} UTC ({ago(now - moment)} ago)"

    fetches = Table("source", "last fetch", "status", "fetched", "new", "last good", "error")
    fetches.title = "fetches"
    for s in found.sources:
        fetches.add_row(
            s.source if s.enabled else f"{s.source} (not enabled)",
            when(s.last_at),
            s.last_status or "—",
            str(s.fetched) if s.last_status else "—",
            str(s.new) if s.last_status else "—",
            when(s.last_ok_at),
            s.error or "",
        )
    wide_console().print(fetches)
    shown = [
        f"{count} {state_name}"
        for state_name, count in found.recent.items()
        if count or state_name in ("sent", "failed")
    ]
    print(f"digests planned in the last 24 hours: {', '.join(shown)}")
    queue = found.queue
    oldest = "" if queue.oldest_since is None else f", oldest ready {when(queue.oldest_since)}"
    print(
        f"queue: {queue.depth} waiting{oldest}; {queue.in_flight} being sent; "
        f"{queue.held} held for an operator"
    )
    people = ", ".join(f"{n} {state_name}" for state_name, n in found.subscribers.items())
    print(f"subscribers: {people} ({found.bounced_recently} bounced in the last 24 hours)")
    if found.mails:
        shown_mail = ", ".join(f"{n} {state}" for state, n in sorted(found.mails.items()))
        print(f"confirmations and links mailed in the last 24 hours: {shown_mail}")
    print(f"semantic matching: {found.semantic}")
    for problem in found.problems:
        print(f"attention: {problem}")
    if not found.problems:
        print("all well")
