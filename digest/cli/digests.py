"""`digest preview`, `rank`, `send`, `run-once` and `demo`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from digest.cli.common import State, app, end_of, parse_day, start_of, wide_console
from digest.cli.subscribers import AuthorOpt, CategoryOpt, ExcludeOpt, IncludeOpt
from digest.config import Settings

if TYPE_CHECKING:
    from digest.app.candidates import Picks
    from digest.app.digests import PlanSummary
    from digest.app.fetching import FetchSummary
    from digest.delivery.sender import SendSummary
    from digest.store import Store


ForDateOpt = Annotated[
    str | None,
    typer.Option("--date", help="plan this local date for everyone, whatever the hour"),
]


def _items_table(title: str, items: Picks, as_json: bool) -> None:
    from digest.render.text import format_reasons

    if as_json:
        from digest.domain import paper_links

        for item, card in items:
            url = paper_links.arxiv_abs(card.arxiv_id) or paper_links.arxiv_title_search(card.title)
            print(
                json.dumps(
                    {
                        "id": card.canonical_id,
                        "arxiv_id": card.arxiv_id,
                        "title": card.title,
                        "url": url,
                        "authors": list(card.authors),
                        "categories": list(card.categories),
                        "first_seen": card.first_seen_at.isoformat()
                        if card.first_seen_at
                        else None,
                        "announced_on": card.announced_on.isoformat()
                        if card.announced_on
                        else None,
                        "upvotes": card.upvotes,
                        "score": round(item.score, 4),
                        "section": item.section,
                        "reasons": [f"{r.kind}: {r.label}" for r in item.reasons],
                    },
                    ensure_ascii=False,
                )
            )
        return
    table = Table("#", "score", "title", "why", title=title)
    for number, (item, card) in enumerate(items, start=1):
        mark = {"picks": "", "revisit": " (another look)"}.get(item.section, " (trending)")
        table.add_row(
            str(number), f"{item.score:.2f}", card.title + mark, format_reasons(item.reasons)
        )
    wide_console().print(table)


@app.command()
def preview(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="whose digest to preview")],
    day: Annotated[
        str | None, typer.Option("--date", help="as if it were this date (default: now)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per paper")] = False,
) -> None:
    """Show what EMAIL would get now, with scores and reasons; writes nothing."""
    from digest.app import candidates

    state: State = ctx.obj
    with state.opened() as store:
        found = candidates.for_reader(state.settings, store, email, end_of(parse_day(day)))
    _items_table(f"{len(found.items)} papers for {found.email}", found.items, as_json)
    if not found.items:
        why = candidates.why_empty(found.candidates, found.seen, found.since, found.returning)
        print(f"nothing for {found.email}: {why}", file=sys.stderr)


@app.command()
def rank(
    ctx: typer.Context,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    category: CategoryOpt = None,
    author: AuthorOpt = None,
    since: Annotated[
        str | None, typer.Option(help="only papers first seen on or after YYYY-MM-DD")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=50, help="most papers")] = 10,
    also_trending: Annotated[bool, typer.Option(help='add "also trending today"')] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per paper")] = False,
) -> None:
    """Rank stored papers for a profile given here, without a subscriber; writes nothing."""
    from digest.domain.profiles import build_profile

    state: State = ctx.obj
    profile = build_profile(
        include or (), exclude or (), category or (), author or (), also_trending
    )
    since_at = start_of(parse_day(since, "--since"))
    from digest.app import candidates  # after the checks: a typo is answered at once

    with state.opened() as store:
        found = candidates.for_profile(
            state.settings, store, profile, limit=limit, now=datetime.now(UTC), since=since_at
        )
    _items_table(f"{len(found.items)} papers for {profile.describe()}", found.items, as_json)
    if not found.items:
        when = found.since.strftime("%Y-%m-%d %H:%M UTC")
        if not found.candidates:
            why = (
                f"no paper stored was first seen since {when}: fetch some with `digest fetch` "
                "(or `make demo` for the bundled sample), or look further back with --since"
            )
        else:
            why = candidates.why_empty(found.candidates, 0, found.since, False)
        print(f"nothing found: {why}", file=sys.stderr)


def run_digests(
    settings: Settings, *, for_date: date | None, only: list[int] | None
) -> tuple[PlanSummary, SendSummary]:
    """Plan, rank and send, with progress on a terminal."""
    from digest.app import digests
    from digest.cli.progress import make_progress, send_progress
    from digest.store import Store

    store = Store.open(settings.database)
    now = datetime.now(UTC)
    try:
        with make_progress() as progress:
            task = progress.add_task("planning and ranking", total=None)

            def planned(summary: PlanSummary) -> None:
                progress.update(
                    task,
                    total=summary.planned,
                    completed=summary.planned,
                    description=f"planned {summary.planned}",
                )

            with send_progress(progress, store, only):
                return digests.run(
                    settings, store, now, for_date=for_date, only=only, on_planned=planned
                )
    finally:
        store.close()


def report(planned: PlanSummary, sent: SendSummary) -> None:
    if planned.no_papers:
        print("no papers stored yet, so nothing was planned: `digest fetch` first")
    unknown = f", unknown {sent.unknown}" if sent.unknown else ""
    capped = " (daily cap reached)" if sent.capped else ""
    print(
        f"planned {planned.planned} digest(s), {planned.skipped} with nothing to send; "
        f"sent {sent.sent}, deferred {sent.deferred}, failed {sent.failed}{unknown}{capped}"
    )


@app.command()
def send(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show who is due and what they would get")
    ] = False,
    to: Annotated[str | None, typer.Option("--to", help="only this subscriber")] = None,
    day: ForDateOpt = None,
) -> None:
    """Plan, rank and send the digests that are due (exit 1 if any failed)."""
    from digest.app import digests

    state: State = ctx.obj
    for_date = parse_day(day)
    only = None
    if to is not None:
        with state.opened() as store:
            only = digests.active_ids(store, to)
    if dry_run:
        _dry_run(state, for_date, only)
        return
    planned, sent = run_digests(state.settings, for_date=for_date, only=only)
    report(planned, sent)
    if sent.failed:
        raise typer.Exit(1)


def _dry_run(state: State, for_date: date | None, only: list[int] | None) -> None:
    """Who is due and what each would get: the same selection as the send (writes nothing)."""
    from digest.app import digests

    with state.opened() as store:
        found = digests.dry_run(
            state.settings, store, datetime.now(UTC), for_date=for_date, only=only
        )
    table = Table(
        "subscriber", "date", "papers", "top paper", title=f"{len(found.due)} due (dry run)"
    )
    for email, day, shown in found.due:
        top = shown.items[0][1].title if shown.items else "—"
        table.add_row(email, day.isoformat(), str(len(shown.items)), top)
    wide_console().print(table)


@app.command("run-once")
def run_once(
    ctx: typer.Context,
    day: ForDateOpt = None,
) -> None:
    """Fetch, then plan, rank, render and send for everyone due, then exit."""
    from digest.cli.progress import fetch_with_progress

    state: State = ctx.obj
    for_date = parse_day(day)
    with state.opened() as store:
        fetched = fetch_with_progress(state.settings, store)
    for s in fetched:
        if s.status == "failed":
            print(f"error: {s.source}: {s.error}", file=sys.stderr)
        else:
            print(f"fetched {s.source}: {s.new} new, {s.updated} updated")
    planned, sent = run_digests(state.settings, for_date=for_date, only=None)
    report(planned, sent)
    if any(s.status == "failed" for s in fetched) or sent.failed:
        raise typer.Exit(1)


@app.command()
def demo(
    ctx: typer.Context,
    database: Annotated[
        Path | None,
        typer.Option(
            help="the SQLite file to run on, made fresh (default: database.url, the file every "
            "other command uses; refused if it holds anybody but the demo's readers)"
        ),
    ] = None,
) -> None:
    """One full cycle on the embedded default: fresh SQLite, the bundled sample, three
    subscribers, their mails written to the outbox folder."""
    from digest.app import demo as demos
    from digest.cli.progress import fetch_with_progress

    state: State = ctx.obj
    database = demos.demo_database(state.settings, database)
    settings = demos.demo_settings(state.settings, database)

    def fetch(settings: Settings, store: Store) -> FetchSummary:
        [fetched] = fetch_with_progress(settings, store, ["sample"])
        return fetched

    now = datetime.now(UTC)
    fetched = demos.setup(settings, database, now, fetch)
    print(f"fetched the bundled sample: {fetched.new} papers stored in {database}")
    planned, sent = run_digests(settings, for_date=now.date(), only=None)
    report(planned, sent)
    table = Table("subscriber", "interests", "papers", "top paper", title="demo digests")
    made = demos.rows(settings)
    for row in made:
        table.add_row(row.email, row.interests, str(row.papers), row.top or "—")
    wide_console().print(table)
    # Whole paths, one a line, after the table: a terminal never cuts them.
    print("open one in a browser to see a digest as its subscriber would:")
    for row in made:
        print(row.html.resolve())
    print(
        "then `digest web` serves these readers' preferences, archive and feedback links "
        f"(the database is {database})"
    )
