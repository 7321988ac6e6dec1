"""The command line: thin commands over the pipeline.

A ``DigestError`` becomes one line on stderr and its exit code; never a traceback for a
user's mistake. Tables and progress go to a terminal; plain output when piped.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from digest import __version__
from digest.config import Settings, load_settings
from digest.errors import DigestError, ValidationError
from digest.sources.base import SOURCE_NAMES
from digest.store import Store

app = typer.Typer(
    help="Trending-papers digest: fetch new papers and mail each subscriber their daily picks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema: apply or inspect migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True)


class State:
    """What the global options set up, shared by the commands."""

    def __init__(self, config: Path | None) -> None:
        self.config_path = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    def store(self) -> Store:
        return Store.open(self.settings.database)


def _version(value: bool) -> None:
    if value:
        console.print(f"digest {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML settings file (default: config/digest.toml)"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log more detail")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    _setup_logging(verbose)
    state = State(config)
    _ = state.settings  # a wrong setting stops here, before any work
    ctx.obj = state


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING
    handler: logging.Handler
    if sys.stderr.isatty():
        handler = RichHandler(console=err_console, show_path=False, show_time=False)
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.INFO if verbose else logging.WARNING)


def parse_day(value: str | None, option: str = "--date") -> date | None:
    if value is None:
        return None
    text = value.strip().lower()
    if text == "today":
        return datetime.now(UTC).date()
    if text == "yesterday":
        return date.fromordinal(datetime.now(UTC).date().toordinal() - 1)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{option}: expected a date as YYYY-MM-DD, got {value!r}") from None


# -- db ---------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply pending migrations (safe to run again: a no-op when up to date)."""
    state: State = ctx.obj
    from digest.store import make_engine

    settings = state.settings.database
    store = Store(make_engine(settings.url, busy_timeout_ms=settings.busy_timeout_ms))
    applied = store.upgrade()
    if applied:
        console.print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        console.print(f"already up to date (revision {store.current_revision()})")


@db_app.command("status")
def db_status(ctx: typer.Context) -> None:
    """Show the schema revision and any pending migrations."""
    state: State = ctx.obj
    from digest.store import make_engine

    settings = state.settings.database
    store = Store(make_engine(settings.url, busy_timeout_ms=settings.busy_timeout_ms))
    pending = store.pending_migrations()
    console.print(f"revision: {store.current_revision() or 'none (empty database)'}")
    if pending:
        console.print(f"pending: {', '.join(pending)} (run `digest db upgrade`)")
        raise typer.Exit(1)
    console.print("pending: none")


# -- fetch and papers -------------------------------------------------------------------


@app.command()
def fetch(
    ctx: typer.Context,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source", "-s", help=f"only this source (repeatable): {', '.join(SOURCE_NAMES)}"
        ),
    ] = None,
    day: Annotated[
        str | None, typer.Option("--date", help="listing day YYYY-MM-DD (default: latest)")
    ] = None,
) -> None:
    """Fetch new listings from the sources and store them; exit 1 if any source failed."""
    state: State = ctx.obj
    for name in source or []:
        if name not in SOURCE_NAMES:
            raise ValidationError(
                f"--source: unknown source {name!r}; choose from {', '.join(SOURCE_NAMES)}"
            )
    listing_day = parse_day(day)
    from digest.pipeline import fetch as run_fetch

    store = state.store()
    with console.status("fetching…") as status:
        summaries = run_fetch(
            state.settings,
            store,
            source or None,
            listing_day,
            on_source=lambda name: status.update(f"fetching {name}…"),
        )
    table = Table("source", "status", "fetched", "new", "updated", "failed", title="fetch")
    for s in summaries:
        table.add_row(
            s.source,
            s.status,
            str(s.fetched),
            str(s.new),
            str(s.updated),
            str(s.skipped) if s.status != "failed" else "all",
        )
    console.print(table)
    failed = [s for s in summaries if s.status == "failed"]
    for s in failed:
        print(f"error: {s.source}: {s.error}", file=sys.stderr)
    store.close()
    if failed:
        raise typer.Exit(1)


@app.command()
def papers(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="only papers first seen on or after YYYY-MM-DD")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="most rows to show")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """List stored papers, newest first."""
    state: State = ctx.obj
    since_day = parse_day(since, "--since")
    since_at = datetime.combine(since_day, time.min, UTC) if since_day else None
    store = state.store()
    rows = store.list_papers(since=since_at, limit=limit)
    total = store.count_papers()
    store.close()
    if as_json:
        for p in rows:
            print(json.dumps(_paper_json(p), ensure_ascii=False))
        return
    width = shutil.get_terminal_size((120, 20)).columns
    table = Table("id", "title", "authors", "categories", "upvotes", "sources")
    table.title = f"{len(rows)} of {total} papers"
    for p in rows:
        table.add_row(
            p.canonical_id if p.arxiv_id else "—",
            p.title,
            _authors(p.authors),
            " ".join(p.categories[:3]),
            "" if p.hf_upvotes is None else str(p.hf_upvotes),
            ",".join(p.sources),
        )
    Console(width=max(width, 100)).print(table)


def _authors(names: list[str]) -> str:
    if len(names) > 3:
        return f"{names[0]} et al. ({len(names)})"
    return ", ".join(names)


def _paper_json(p: object) -> dict[str, object]:
    from digest import links
    from digest.models import Paper

    assert isinstance(p, Paper)
    return {
        "id": p.canonical_id,
        "arxiv_id": p.arxiv_id,
        "title": p.title,
        "authors": p.authors,
        "categories": p.categories,
        "upvotes": p.hf_upvotes,
        "first_seen_at": p.first_seen_at.isoformat(),
        "announced_on": p.announced_on.isoformat() if p.announced_on else None,
        "sources": p.sources,
        "url": links.arxiv_abs(p.arxiv_id),
    }


# -- subscribers -------------------------------------------------------------------------

IncludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--include", "-i", help='a word or phrase, optional weight: "graph neural network"^2'
    ),
]
ExcludeOpt = Annotated[
    list[str] | None, typer.Option("--exclude", "-x", help="a word or phrase that vetoes a paper")
]
CategoryOpt = Annotated[
    list[str] | None, typer.Option("--category", help="an arXiv category or archive: cs.LG, hep-th")
]
AuthorOpt = Annotated[list[str] | None, typer.Option("--author", help="an author to follow")]


@app.command()
def subscribe(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="the subscriber's address")],
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    category: CategoryOpt = None,
    author: AuthorOpt = None,
    tz: Annotated[
        str | None, typer.Option("--tz", help="IANA time zone, e.g. Europe/Berlin")
    ] = None,
    hour: Annotated[int | None, typer.Option(help="local hour to send, 0–23")] = None,
    weekly: Annotated[
        str | None, typer.Option(help="weekly on this day (mon … sun) instead of daily")
    ] = None,
    max_papers: Annotated[int | None, typer.Option(help="most papers per mail, 1–50")] = None,
    send_when_empty: Annotated[
        bool | None, typer.Option("--send-when-empty/--skip-when-empty", help="mail on empty days")
    ] = None,
    also_trending: Annotated[
        bool | None,
        typer.Option("--also-trending/--no-also-trending", help='add "also trending today"'),
    ] = None,
) -> None:
    """Subscribe EMAIL (active at once: the CLI skips the emailed confirmation), or update it."""
    from digest import subscribers
    from digest.profiles import build_profile

    state: State = ctx.obj
    store = state.store()
    with store.transaction() as session:
        existing = subscribers.find(session, email)
        old = subscribers.profile_of(existing) if existing else None
        profile = build_profile(
            include if include is not None else [str(t) for t in (old.include if old else ())],
            exclude if exclude is not None else (old.exclude if old else ()),
            category if category is not None else (old.categories if old else ()),
            author if author is not None else ("; ".join(old.authors),) if old else (),
            also_trending if also_trending is not None else bool(old and old.also_trending),
        )
        base = (
            subscribers.Schedule(
                existing.timezone,
                existing.send_hour,
                existing.frequency,
                existing.weekday,
                existing.max_papers,
                existing.send_when_empty,
            )
            if existing
            else subscribers.Schedule.default(state.settings.subscribers)
        )
        schedule = subscribers.Schedule.checked(
            tz or base.timezone,
            base.send_hour if hour is None else hour,
            "weekly" if weekly else base.frequency,
            weekly if weekly else base.weekday,
            base.max_papers if max_papers is None else max_papers,
            base.send_when_empty if send_when_empty is None else send_when_empty,
        )
        subscriber, created = subscribers.upsert(session, email, profile, schedule, confirmed=True)
        verb = "subscribed" if created else "updated"
        line = (
            f"{verb} {subscriber.email}: {_when(subscriber)}; "
            f"{subscribers.profile_of(subscriber).describe()}"
        )
    store.close()
    print(line)


def _when(subscriber: object) -> str:
    from digest.models import Subscriber
    from digest.subscribers import WEEKDAYS

    assert isinstance(subscriber, Subscriber)
    day = (
        "daily"
        if subscriber.frequency == "daily"
        else f"weekly on {WEEKDAYS[subscriber.weekday or 0]}"
    )
    hour = f"{subscriber.send_hour:02d}:00 {subscriber.timezone}"
    return f"{day} at {hour}, up to {subscriber.max_papers} papers"


@app.command("subscribers")
def list_subscribers(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="only this status: pending, active, unsubscribed, bounced")
    ] = None,
    bounced: Annotated[bool, typer.Option("--bounced", help="only bounced addresses")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """List subscribers with their status, schedule and topics."""
    from digest import subscribers

    state: State = ctx.obj
    store = state.store()
    with store.transaction() as session:
        rows = subscribers.listing(session, "bounced" if bounced else status)
        data = [
            {
                "email": s.email,
                "status": s.status,
                "timezone": s.timezone,
                "hour": s.send_hour,
                "frequency": s.frequency
                if s.frequency == "daily"
                else f"weekly:{subscribers.WEEKDAYS[s.weekday or 0]}",
                "max_papers": s.max_papers,
                "topics": subscribers.profile_of(s).describe(),
                "created_at": s.created_at.isoformat(timespec="seconds"),
            }
            for s in rows
        ]
    store.close()
    if as_json:
        for item in data:
            print(json.dumps(item, ensure_ascii=False))
        return
    table = Table("email", "status", "when", "papers", "topics", title=f"{len(data)} subscribers")
    for item in data:
        when = f"{item['frequency']} {item['hour']:02d}:00 {item['timezone']}"
        table.add_row(item["email"], item["status"], when, str(item["max_papers"]), item["topics"])
    _wide_console().print(table)


@app.command()
def unsubscribe(
    ctx: typer.Context, email: Annotated[str, typer.Argument(help="the address to stop mailing")]
) -> None:
    """Stop mailing EMAIL (its history is kept; `digest subscribe` brings it back)."""
    from digest import subscribers

    state: State = ctx.obj
    store = state.store()
    with store.transaction() as session:
        subscriber = subscribers.get(session, email)
        changed = subscribers.unsubscribe(subscriber)
        address = subscriber.email
    store.close()
    print(f"unsubscribed {address}" if changed else f"{address} was already unsubscribed")


@app.command()
def profile(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="whose profile")],
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    category: CategoryOpt = None,
    author: AuthorOpt = None,
    also_trending: Annotated[
        bool | None,
        typer.Option("--also-trending/--no-also-trending", help='add "also trending today"'),
    ] = None,
    clear: Annotated[bool, typer.Option(help="start from an empty profile")] = False,
) -> None:
    """Show a subscriber's interest profile; options replace the lists they name."""
    from digest import subscribers
    from digest.profiles import Profile, build_profile

    state: State = ctx.obj
    store = state.store()
    with store.transaction() as session:
        subscriber = subscribers.get(session, email)
        old = Profile() if clear else subscribers.profile_of(subscriber)
        changing = clear or any(
            v is not None for v in (include, exclude, category, author, also_trending)
        )
        if changing:
            new = build_profile(
                include if include is not None else [str(t) for t in old.include],
                exclude if exclude is not None else old.exclude,
                category if category is not None else old.categories,
                author
                if author is not None
                else (("; ".join(old.authors),) if old.authors else ()),
                old.also_trending if also_trending is None else also_trending,
            )
            subscribers.set_profile(subscriber, new)
        shown = subscribers.profile_of(subscriber)
        address = subscriber.email
    store.close()
    table = Table("", "", title=f"profile of {address}" + (" (updated)" if changing else ""))
    table.add_row("include", ", ".join(str(t) for t in shown.include) or "—")
    table.add_row("exclude", ", ".join(shown.exclude) or "—")
    table.add_row("categories", ", ".join(shown.categories) or "—")
    table.add_row("authors", "; ".join(shown.authors) or "—")
    table.add_row("also trending", "yes" if shown.also_trending else "no")
    _wide_console().print(table)


def _wide_console() -> Console:
    return Console(width=max(shutil.get_terminal_size((120, 20)).columns, 100))


# -- digests ---------------------------------------------------------------------------


def _items_table(title: str, items: list, as_json: bool) -> None:
    from digest.render import format_reasons

    if as_json:
        for item, card in items:
            print(
                json.dumps(
                    {
                        "id": card.canonical_id,
                        "title": card.title,
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
        mark = "" if item.section == "picks" else " (trending)"
        table.add_row(
            str(number), f"{item.score:.2f}", card.title + mark, format_reasons(item.reasons)
        )
    _wide_console().print(table)


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
    from digest.pipeline import subscriber_preview

    state: State = ctx.obj
    store = state.store()
    person, items = subscriber_preview(state.settings, store, email, _as_of(day))
    store.close()
    _items_table(f"{len(items)} papers for {person.email}", items, as_json)


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
    from digest.pipeline import preview as run_preview
    from digest.profiles import build_profile

    state: State = ctx.obj
    profile = build_profile(
        include or (), exclude or (), category or (), author or (), also_trending
    )
    since_day = parse_day(since, "--since")
    store = state.store()
    items = run_preview(
        state.settings,
        store,
        profile,
        limit=limit,
        now=datetime.now(UTC),
        since=datetime.combine(since_day, time.min, UTC) if since_day else None,
    )
    store.close()
    _items_table(f"{len(items)} papers for {profile.describe()}", items, as_json)


def _as_of(day: str | None) -> datetime:
    parsed = parse_day(day)
    if parsed is None:
        return datetime.now(UTC)
    return datetime.combine(parsed, time(23, 59, 59), UTC)


def _subscriber_ids(state: State, email: str | None) -> list[int] | None:
    if email is None:
        return None
    from digest import subscribers

    store = state.store()
    with store.transaction() as session:
        person = subscribers.get(session, email)
        if person.status != "active":
            raise ValidationError(
                f"{person.email} is {person.status}; only active subscribers get mail"
            )
        ids = [person.id]
    store.close()
    return ids


def _run_digests(
    state: State, *, for_date: date | None, only: list[int] | None, settings: Settings | None = None
) -> tuple[object, object]:
    from digest import pipeline
    from digest.delivery.mailers import make_mailer
    from digest.tokens import Links, Tokens, secret_key

    settings = settings or state.settings
    store = Store.open(settings.database)
    now = datetime.now(UTC)
    with console.status("planning and ranking…"):
        planned = pipeline.plan_and_rank(settings, store, now, for_date=for_date, only=only)
    mailer = make_mailer(settings)
    links = Links(settings, Tokens(secret_key(settings)))
    try:
        with console.status("sending…"):
            sent = pipeline.send_ready(
                settings, store, mailer, pipeline.make_renderer(settings), links, only=only
            )
    finally:
        mailer.close()
        store.close()
    return planned, sent


def _report(planned: object, sent: object) -> None:
    from digest.pipeline import PlanSummary, SendSummary

    assert isinstance(planned, PlanSummary) and isinstance(sent, SendSummary)
    print(
        f"planned {planned.planned} digest(s), {planned.skipped} with nothing to send; "
        f"sent {sent.sent}, deferred {sent.deferred}, failed {sent.failed}"
    )


@app.command()
def send(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show who is due and what they would get")
    ] = False,
    to: Annotated[str | None, typer.Option("--to", help="only this subscriber")] = None,
    day: Annotated[
        str | None,
        typer.Option("--date", help="plan this local date for everyone, whatever the hour"),
    ] = None,
) -> None:
    """Plan, rank and send the digests that are due (exit 1 if any failed)."""
    state: State = ctx.obj
    for_date = parse_day(day)
    only = _subscriber_ids(state, to)
    if dry_run:
        _dry_run(state, for_date, only)
        return
    planned, sent = _run_digests(state, for_date=for_date, only=only)
    _report(planned, sent)
    if getattr(sent, "failed", 0):
        raise typer.Exit(1)


def _dry_run(state: State, for_date: date | None, only: list[int] | None) -> None:
    from digest.delivery import outbox
    from digest.models import Subscriber
    from digest.pipeline import subscriber_preview

    store = state.store()
    now = datetime.now(UTC)
    with store.transaction() as session:
        due = outbox.due(session, now, only, for_date=for_date)
        emails = [session.get(Subscriber, d.subscriber_id).email for d in due]  # type: ignore[union-attr]
    table = Table("subscriber", "date", "papers", "top paper", title=f"{len(due)} due (dry run)")
    for d, email in zip(due, emails, strict=True):
        _, items = subscriber_preview(state.settings, store, email, now)
        top = items[0][1].title if items else "—"
        table.add_row(email, d.local_date.isoformat(), str(len(items)), top)
    store.close()
    _wide_console().print(table)


@app.command("run-once")
def run_once(
    ctx: typer.Context,
    day: Annotated[
        str | None,
        typer.Option("--date", help="plan this local date for everyone, whatever the hour"),
    ] = None,
) -> None:
    """Fetch, then plan, rank, render and send for everyone due, then exit."""
    from digest.pipeline import fetch as run_fetch

    state: State = ctx.obj
    for_date = parse_day(day)
    store = state.store()
    fetched = run_fetch(state.settings, store)
    store.close()
    for s in fetched:
        if s.status == "failed":
            print(f"error: {s.source}: {s.error}", file=sys.stderr)
        else:
            print(f"fetched {s.source}: {s.new} new, {s.updated} updated")
    planned, sent = _run_digests(state, for_date=for_date, only=None)
    _report(planned, sent)
    if any(s.status == "failed" for s in fetched) or getattr(sent, "failed", 0):
        raise typer.Exit(1)


@app.command()
def serve(ctx: typer.Context) -> None:
    """Run the scheduler: fetch on a cron, and send each digest at its local hour."""
    from digest.scheduler import serve as run_scheduler

    state: State = ctx.obj
    store = state.store()
    try:
        run_scheduler(state.settings, store)
    finally:
        store.close()


# -- demo -------------------------------------------------------------------------------

DEMO_SUBSCRIBERS = [
    (
        "ada@example.org",
        {
            "include": ['"large language model"^2, reasoning, "chain of thought", agents'],
            "exclude": ["survey"],
            "categories": [],
            "authors": [],
        },
        "America/New_York",
        False,
    ),
    (
        "ben@example.org",
        {
            "include": ["diffusion^2, image generation, video, segmentation"],
            "exclude": [],
            "categories": ["cs.CV"],
            "authors": [],
        },
        "Europe/Berlin",
        True,
    ),
    (
        "chen@example.org",
        {"include": [], "exclude": [], "categories": [], "authors": []},
        "Asia/Shanghai",
        False,
    ),
]


@app.command()
def demo(
    ctx: typer.Context,
    database: Annotated[
        Path, typer.Option(help="the demo's own SQLite file, made fresh on each run")
    ] = Path("var/demo.db"),
) -> None:
    """One full cycle on the embedded default: fresh SQLite, the bundled sample, three
    subscribers, their mails written to the outbox folder."""
    from digest import subscribers
    from digest.pipeline import fetch as run_fetch
    from digest.profiles import build_profile

    state: State = ctx.obj
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    base = state.settings
    settings = base.model_copy(
        update={
            "database": base.database.model_copy(
                update={"url": f"sqlite:///{database}", "migrate": True}
            ),
            "mail": base.mail.model_copy(update={"transport": "file"}),
        }
    )
    outbox_dir = Path(settings.paths.outbox_dir)
    if outbox_dir.is_dir():
        for old in list(outbox_dir.glob("*.eml")) + list(outbox_dir.glob("*.html")):
            old.unlink()
    store = Store.open(settings.database)
    [fetched] = run_fetch(settings, store, ["sample"])
    print(f"fetched the bundled sample: {fetched.new} papers stored in {database}")
    with store.transaction() as session:
        for email, interests, zone, trending in DEMO_SUBSCRIBERS:
            profile = build_profile(**interests, also_trending=trending)
            schedule = subscribers.Schedule.checked(zone, 7, max_papers=8)
            subscribers.upsert(session, email, profile, schedule, confirmed=True)
    store.close()
    today = datetime.now(UTC).date()
    planned, sent = _run_digests(state, for_date=today, only=None, settings=settings)
    _report(planned, sent)
    _demo_table(settings, database)


def _demo_table(settings: Settings, database: Path) -> None:
    from sqlalchemy import select

    from digest.models import Delivery, DeliveryItem, Paper, Subscriber

    store = Store.open(settings.database)
    table = Table("subscriber", "interests", "papers", "top paper", "open", title="demo digests")
    with store.transaction() as session:
        rows = session.execute(
            select(Subscriber, Delivery).join(Delivery).order_by(Subscriber.email)
        ).all()
        from digest import compose, subscribers

        for person, delivery in rows:
            top = session.scalar(
                select(Paper.title)
                .join(DeliveryItem, DeliveryItem.paper_id == Paper.id)
                .where(DeliveryItem.delivery_id == delivery.id)
                .order_by(DeliveryItem.position)
                .limit(1)
            )
            name = compose.outbox_name(delivery.local_date, person.email, delivery.public_id)
            path = Path(settings.paths.outbox_dir) / f"{name}.html"
            table.add_row(
                person.email,
                subscribers.profile_of(person).describe(),
                str(delivery.paper_count),
                top or "—",
                str(path),
            )
    store.close()
    _wide_console().print(table)
    print("open an .html file in a browser to see a digest as a subscriber would")


def main() -> None:
    try:
        app()
    except DigestError as exc:
        # One plain line, never wrapped, so logs and scripts see it whole.
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
