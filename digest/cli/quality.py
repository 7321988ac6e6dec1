"""`digest quality`: is the ranking working for readers? (see docs/operations.md)"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from digest.cli.common import State, app, console

if TYPE_CHECKING:
    from digest.store.reports import QualityDay


def _rate(value: float | None, *, percent: bool) -> str:
    if value is None:
        return "—"
    return f"{value:.1%}" if percent else f"{value:.1f}"


def _row(label: str, day: QualityDay) -> list[str]:
    from digest.app import quality

    shown = quality.figures(day)
    return [
        label,
        str(day.sent),
        str(day.picks),
        _rate(shown["liked_ratio"], percent=True),
        _rate(shown["disliked_ratio"], percent=True),
        _rate(shown["empty_ratio"], percent=True),
        _rate(shown["unsubscribes_per_1000"], percent=False),
        _rate(shown["bounces_per_1000"], percent=False),
    ]


@app.command("quality")
def quality_command(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, max=366, help="days to look back (UTC)")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object, for machines")] = False,
    listed: Annotated[
        bool, typer.Option("--list", help="also list the readers without positive feedback")
    ] = False,
) -> None:
    """How digests are received: per day and over the window, digests sent, papers picked,
    the share of picks liked and disliked, empty digests, unsubscribes and bounces per 1,000
    digests, and the readers with no "more like this". Reads only what is recorded (no opens
    are tracked); changes nothing."""
    from digest.app import quality

    state: State = ctx.obj
    with state.opened() as store:
        found = quality.report(store, datetime.now(UTC), days, listed=listed)
    if as_json:
        print(json.dumps(found.as_json(), ensure_ascii=False))
        return
    columns = ("day", "sent", "picks", "liked", "disliked", "empty", "unsub/1000", "bounce/1000")
    table = Table(*columns, title=f"digests received, last {days} days (UTC)")
    for row in found.rows:
        table.add_row(*_row(row.day.isoformat() if row.day else "", row))
    table.add_section()
    table.add_row(*_row("all", found.total))
    console.print(table)
    console.print(
        f"{found.unpraised} active reader(s) got digests but gave no “more like this” "
        f"in {days} days"
    )
    for address in found.unpraised_addresses or []:
        console.print(f"  {address}")
