"""The command line: thin commands over the pipeline.

A ``DigestError`` becomes one line on stderr and its exit code; never a traceback for a
user's mistake. Tables go to stdout (plain when piped); progress bars go to stderr, only when
it is a terminal; logs go to stderr as set by ``[logging]`` (see :mod:`digest.logs`).
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from digest import __version__, logs
from digest.config import Settings, load_settings, secret_key
from digest.errors import DigestError, StoreError, ValidationError
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


LogFormat = Literal["auto", "text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML settings file (default: config/digest.toml)"),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="log everything (the debug level)")
    ] = False,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            "--log-format",
            help="auto (coloured on a terminal), text (one plain line per event) or json "
            "(default: logging.format)",
        ),
    ] = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            "--log-level",
            help="debug, info, warning or error (default: logging.level; auto: info for "
            "serve, worker and web, warning otherwise)",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    state = State(config)
    settings = state.settings  # a wrong setting stops here, before any work
    service = ctx.invoked_subcommand in SERVICES
    _setup_logging(settings, verbose, log_format, log_level, service=service)
    ctx.obj = state


# Long-running commands: at logging.level = "auto" they log every event (info), the others
# only problems (warning).
SERVICES = frozenset({"serve", "worker", "web"})


def _setup_logging(
    settings: Settings,
    verbose: bool = False,
    log_format: str | None = None,
    log_level: str | None = None,
    *,
    service: bool = False,
) -> None:
    """One line per event on stderr; addresses and tokens masked (see digest.logs)."""
    logs.setup(
        settings.logging, verbose=verbose, format=log_format, level=log_level, service=service
    )


# -- progress ---------------------------------------------------------------------------


class _RateColumn(ProgressColumn):
    """Items per second, once there is a rate to show."""

    def __init__(self, unit: str = "/s") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f}{self.unit}" if speed else "", style="progress.data.speed")


def make_progress(out: Console | None = None) -> Progress:
    """A progress display on stderr (counts, rate, elapsed, time left), shown only when that
    is a terminal: nothing at all is written to a pipe, a file or a log collector."""
    out = out or err_console
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=out,
        disable=not out.is_terminal,
        transient=False,
    )


def _fetch_with_progress(
    settings: Settings,
    store: Store,
    names: Sequence[str] | None = None,
    day: date | None = None,
) -> list:
    """``pipeline.fetch``, with a bar over the sources on a terminal."""
    from digest.pipeline import fetch as run_fetch

    chosen = list(names or settings.sources.enabled)
    with make_progress() as progress:
        task = progress.add_task("fetching", total=len(chosen))
        started: list[str] = []

        def on_source(name: str) -> None:
            if started:
                progress.advance(task)
            started.append(name)
            progress.update(task, description=f"fetching {name}")

        summaries = run_fetch(settings, store, chosen, day, on_source=on_source)
        new = sum(s.new for s in summaries)
        progress.update(task, completed=len(chosen), description=f"fetched: {new} new papers")
    return summaries


class _SendWatch:
    """Counts a send run's progress from the database: the senders run on their own threads
    and record each outcome as it happens, so what is left is what is still ready or in
    flight among the deliveries that were ready when the run began."""

    def __init__(self, store: Store, only: Sequence[int] | None, started: datetime) -> None:
        self.store = store
        self.only = list(only) if only is not None else None
        self.started = started

    def remaining(self) -> int:
        from sqlalchemy import and_, func, or_, select

        from digest.models import Delivery

        ready = or_(
            and_(Delivery.status == "planned", Delivery.ranked_at.is_not(None)),
            Delivery.status == "sending",
            and_(
                Delivery.status.in_(["deferred", "unknown"]),
                Delivery.next_attempt_at <= self.started,
            ),
        )
        if self.only is not None:
            ready = and_(ready, Delivery.subscriber_id.in_(self.only))
        with self.store.transaction() as session:
            return session.scalar(select(func.count()).where(ready)) or 0


@contextmanager
def _send_progress(
    progress: Progress, store: Store, only: Sequence[int] | None, *, every: float = 0.5
) -> Iterator[None]:
    """A bar over the digests ready to send, updated from the database while sending."""
    if progress.disable:
        yield
        return
    watch = _SendWatch(store, only, datetime.now(UTC))
    total = watch.remaining()
    task: TaskID = progress.add_task("sending", total=total)
    done = threading.Event()

    def poll() -> None:
        while not done.wait(every):
            try:
                progress.update(task, completed=max(total - watch.remaining(), 0))
            except Exception as exc:  # a display must never break a send
                logging.getLogger(__name__).debug("progress: %s", exc)

    thread = threading.Thread(target=poll, name="send-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)
        progress.update(task, completed=max(total - watch.remaining(), 0))


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
    store = state.store()
    summaries = _fetch_with_progress(state.settings, store, source or None, listing_day)
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
    from digest.domain import paper_links
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
        "url": paper_links.arxiv_abs(p.arxiv_id),
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
    from digest.domain.profiles import build_profile
    from digest.store import subscribers

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
    from digest.store.subscribers import WEEKDAYS

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
    from digest.store import subscribers

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
                "bounces": s.bounce_count,
                "last_bounce_at": s.last_bounce_at.isoformat(timespec="seconds")
                if s.last_bounce_at
                else None,
            }
            for s in rows
        ]
    store.close()
    if as_json:
        for item in data:
            print(json.dumps(item, ensure_ascii=False))
        return
    table = Table("email", "status", "when", "papers", "topics", title=f"{len(data)} subscribers")
    if bounced:
        table.add_column("bounces")
        table.add_column("last bounce")
    for item in data:
        when = f"{item['frequency']} {item['hour']:02d}:00 {item['timezone']}"
        row = [item["email"], item["status"], when, str(item["max_papers"]), item["topics"]]
        if bounced:
            row += [str(item["bounces"]), str(item["last_bounce_at"] or "—")]
        table.add_row(*row)
    _wide_console().print(table)


@app.command()
def unsubscribe(
    ctx: typer.Context, email: Annotated[str, typer.Argument(help="the address to stop mailing")]
) -> None:
    """Stop mailing EMAIL (its history is kept; `digest subscribe` brings it back)."""
    from digest.store import subscribers

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
    description: Annotated[
        str | None, typer.Option(help="what they follow, in their own words (semantic matching)")
    ] = None,
    seed: Annotated[
        Path | None,
        typer.Option(
            help="papers they like: a BibTeX, RIS or CSL-JSON export (Zotero…) or a list of "
            "arXiv ids; each counts as 'more like this'",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    like: Annotated[
        list[str] | None, typer.Option("--like", help="an arXiv id: more like this paper")
    ] = None,
    dislike: Annotated[
        list[str] | None, typer.Option("--dislike", help="an arXiv id: fewer like this paper")
    ] = None,
) -> None:
    """Show a subscriber's interest profile; options replace the lists they name.

    --seed, --like and --dislike add feedback (papers not stored yet are fetched from the
    arXiv API; ids it does not know are reported) and relearn the profile.
    """
    from digest.domain.profiles import Profile, build_profile
    from digest.store import subscribers

    state: State = ctx.obj
    store = state.store()
    liked = _seed_ids(seed, like)
    disliked = _seed_ids(None, dislike)
    with store.transaction() as session:
        subscriber = subscribers.get(session, email)
        old = Profile() if clear else subscribers.profile_of(subscriber)
        changing = clear or any(
            v is not None for v in (include, exclude, category, author, also_trending, description)
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
            text = old.description if description is None else " ".join(description.split())
            # What feedback taught stays unless --clear: it follows the stored choices.
            kept = None if clear else old.extra.get("learned")
            new = new.with_extra(description=text or None, learned=kept)
            subscribers.set_profile(subscriber, new)
        address = subscriber.email
    if liked or disliked:
        changing = True
        _add_feedback(state.settings, store, address, liked, disliked)
    with store.transaction() as session:
        shown = subscribers.profile_of(subscribers.get(session, address))
    store.close()
    table = Table("", "", title=f"profile of {address}" + (" (updated)" if changing else ""))
    table.add_row("include", ", ".join(str(t) for t in shown.include) or "—")
    table.add_row("exclude", ", ".join(shown.exclude) or "—")
    table.add_row("categories", ", ".join(shown.categories) or "—")
    table.add_row("authors", "; ".join(shown.authors) or "—")
    table.add_row("also trending", "yes" if shown.also_trending else "no")
    table.add_row("description", shown.description or "—")
    learned = shown.learned
    if learned.events or learned.removed_terms or learned.removed_authors:
        table.add_row("feedback", f"{learned.likes} more like this, {learned.dislikes} fewer")
        table.add_row(
            "learned words",
            ", ".join(f"{t.text} {t.weight:+.2f}" for t in learned.terms) or "—",
        )
        table.add_row("learned authors", "; ".join(a.name for a in learned.authors) or "—")
        model = "off (switched off)" if learned.model_off else "not yet"
        if learned.model_on:
            model = "on: " + ", ".join(t.text for t in learned.model if t.weight > 0)[:200]
        table.add_row("personal model", model)
    _wide_console().print(table)


def _seed_ids(path: Path | None, given: list[str] | None) -> list[str]:
    """arXiv ids from a seed file and/or --like/--dislike options; bad input is an error."""
    from digest.seeds import SeedError, read_seed

    ids: list[str] = []
    try:
        if path is not None:
            found = read_seed(path.read_bytes(), path.name)
            for skipped in found.skipped:
                print(f"left out (no arXiv id): {skipped}", file=sys.stderr)
            ids.extend(found.ids)
        if given:
            found = read_seed("\n".join(given))
            if found.skipped:
                raise SeedError("; ".join(found.skipped))
            ids.extend(i for i in found.ids if i not in ids)
    except SeedError as exc:
        raise ValidationError(f"{path.name + ': ' if path else ''}{exc}") from None
    return ids


def _add_feedback(
    settings: Settings, store: Store, email: str, liked: list[str], disliked: list[str]
) -> None:
    from sqlalchemy import select

    from digest.models import Paper
    from digest.seeds import find_papers
    from digest.store import feedback, subscribers

    now = datetime.now(UTC)
    found = find_papers(settings, store, [*liked, *disliked], now)
    if found.problem:
        print(f"warning: {found.problem}", file=sys.stderr)
    for missing in found.unknown:
        print(f"not found on arXiv: {missing}", file=sys.stderr)
    wanted = {p.id: (1 if p.canonical_id in liked else -1) for p in found.papers}
    with store.transaction() as session:
        person = subscribers.get(session, email)
        for paper in session.scalars(select(Paper).where(Paper.id.in_(list(wanted)))):
            feedback.record(session, person, paper, wanted[paper.id], now)
        if wanted:
            feedback.relearn(session, person, settings.feedback, now)
    print(
        f"added {sum(1 for v in wanted.values() if v > 0)} liked and "
        f"{sum(1 for v in wanted.values() if v < 0)} disliked paper(s)"
        + (f" ({found.fetched} fetched from arXiv)" if found.fetched else "")
    )


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
    from digest.domain.profiles import build_profile
    from digest.pipeline import preview as run_preview

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
    from digest.store import subscribers

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
    from digest.domain.tokens import SignedLinks, Tokens

    settings = settings or state.settings
    store = Store.open(settings.database)
    now = datetime.now(UTC)
    try:
        with make_progress() as progress:
            task = progress.add_task("planning and ranking", total=None)
            planned = pipeline.plan_and_rank(settings, store, now, for_date=for_date, only=only)
            progress.update(
                task,
                total=planned.planned,
                completed=planned.planned,
                description=f"planned {planned.planned}",
            )
            links = SignedLinks(settings.web.base_url, Tokens(secret_key(settings)))
            with _send_progress(progress, store, only):
                sent = pipeline.send_all(
                    settings, store, pipeline.make_renderer(settings), links, only=only
                )
    finally:
        store.close()
    return planned, sent


def _report(planned: object, sent: object) -> None:
    from digest.pipeline import PlanSummary, SendSummary

    assert isinstance(planned, PlanSummary) and isinstance(sent, SendSummary)
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
    from digest.models import Subscriber
    from digest.pipeline import subscriber_preview
    from digest.store import outbox

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
    state: State = ctx.obj
    for_date = parse_day(day)
    store = state.store()
    try:
        fetched = _fetch_with_progress(state.settings, store)
    finally:
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
def serve(
    ctx: typer.Context,
    web: Annotated[
        bool, typer.Option("--web/--no-web", help="also serve the subscriber web app")
    ] = True,
) -> None:
    """Run the service: the web app, fetching on a cron, and each digest at its local hour."""
    import threading

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
    import threading

    from digest.scheduler import run_worker

    state: State = ctx.obj
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger(__name__).warning("signal %d: finishing the messages in flight", signum)
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


def _open_store_patiently(state: State, stop: object, wait: float = 60.0) -> Store:
    """A worker started while the database restarts (or its first connection is cut) waits
    for it, up to ``wait`` seconds, rather than exiting; a wrong setting still fails at once."""
    import threading
    import time as clock

    from digest.errors import StoreError

    assert isinstance(stop, threading.Event)
    deadline = clock.monotonic() + wait
    while True:
        try:
            return state.store()
        except StoreError as exc:
            if "cannot use the database" not in str(exc) or clock.monotonic() > deadline:
                raise
            logging.getLogger(__name__).warning("database not ready (%s); retrying", exc)
            if stop.wait(1.0):
                raise


EX_TEMPFAIL = 75  # sysexits.h: a mail system retries a pipe that exits with it


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
    from digest.delivery.bounces import MAX_REPORT_BYTES, ingest_bounce
    from digest.errors import StoreError

    state: State = ctx.obj
    if source == "-":
        raw = sys.stdin.buffer.read(MAX_REPORT_BYTES + 1)
    else:
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            raise ValidationError(f"cannot read {source}: {exc.strerror}") from None
    try:
        store = state.store()
        try:
            result = ingest_bounce(state.settings, store, raw, envelope_recipient=recipient)
        finally:
            store.close()
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(EX_TEMPFAIL) from None
    who = f" {result.email}" if result.email else ""
    status = f" {result.status}" if result.status else ""
    print(f"{result.outcome}:{who}{status} ({result.kind or '-'}): {result.detail}")
    if not result.accepted:
        raise typer.Exit(1)


@app.command()
def reactivate(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="a bounced address that works again")],
) -> None:
    """Mail a bounced address again (its bounce count starts from zero)."""
    from digest.delivery.bounces import reactivate as run_reactivate
    from digest.store import subscribers

    state: State = ctx.obj
    store = state.store()
    with store.transaction() as session:
        person = subscribers.get(session, email)
        changed = run_reactivate(session, person)
        address, status = person.email, person.status
    store.close()
    if not changed:
        raise ValidationError(f"{address} is {status}, not bounced; nothing to reactivate")
    print(f"reactivated {address}")


outbox_app = typer.Typer(
    help="The outbox: deliveries by state; retry failed or held ones.", no_args_is_help=True
)
app.add_typer(outbox_app, name="outbox")

OUTBOX_STATES = (
    "planned",
    "sending",
    "sent",
    "deferred",
    "failed",
    "unknown",
    "skipped",
    "cancelled",
)


@outbox_app.command("status")
def outbox_status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """How many deliveries are in each state."""
    from digest.store import outbox

    state: State = ctx.obj
    store = state.store()
    with store.transaction() as session:
        counts = outbox.counts(session)
    store.close()
    if as_json:
        print(json.dumps({name: counts.get(name, 0) for name in OUTBOX_STATES}))
        return
    table = Table("state", "deliveries", title="outbox")
    for name in OUTBOX_STATES:
        table.add_row(name, str(counts.get(name, 0)))
    console.print(table)


@outbox_app.command("list")
def outbox_list(
    ctx: typer.Context,
    status: Annotated[str, typer.Option(help=f"one of: {', '.join(OUTBOX_STATES)}")] = "failed",
    limit: Annotated[int, typer.Option(min=1, help="most rows to show")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Deliveries in one state, newest first, with their last error or reply."""
    from sqlalchemy import select

    from digest.models import Delivery, Subscriber

    if status not in OUTBOX_STATES:
        raise ValidationError(f"--status: expected one of {', '.join(OUTBOX_STATES)}")
    state: State = ctx.obj
    store = state.store()
    with store.transaction() as session:
        rows = [
            {
                "id": d.public_id,
                "email": email,
                "date": d.local_date.isoformat(),
                "attempts": d.attempts,
                "next_attempt_at": d.next_attempt_at.isoformat(timespec="seconds")
                if d.next_attempt_at
                else None,
                "detail": d.smtp_reply if d.status == "sent" else d.last_error,
            }
            for d, email in session.execute(
                select(Delivery, Subscriber.email)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Delivery.status == status)
                .order_by(Delivery.id.desc())
                .limit(limit)
            )
        ]
    store.close()
    if as_json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return
    table = Table("id", "email", "date", "attempts", "next attempt", "detail", title=status)
    for row in rows:
        table.add_row(
            str(row["id"])[:12],
            str(row["email"]),
            str(row["date"]),
            str(row["attempts"]),
            str(row["next_attempt_at"] or "—"),
            str(row["detail"] or ""),
        )
    _wide_console().print(table)


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
    from digest.store import outbox

    chosen = status or []
    for name in chosen:
        if name not in ("unknown", "failed", "deferred"):
            raise ValidationError("--status: expected unknown, failed or deferred")
    if not chosen and not ids:
        raise ValidationError("name delivery ids or give --status")
    state: State = ctx.obj
    store = state.store()
    with store.transaction() as session:
        count = outbox.requeue(
            session, datetime.now(UTC), statuses=chosen, public_ids=list(ids or [])
        )
    store.close()
    print(f"{count} deliveries queued again")


# -- status -----------------------------------------------------------------------------

STATUS_OK = 0
STATUS_ATTENTION = 1


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
    from sqlalchemy.exc import SQLAlchemyError

    from digest.store import make_engine
    from digest.store import reports as health

    state: State = ctx.obj
    settings = state.settings
    store = Store(
        make_engine(settings.database.url, busy_timeout_ms=settings.database.busy_timeout_ms)
    )
    try:
        pending = store.pending_migrations()
        if pending:
            raise StoreError(
                f"the database schema is behind by {len(pending)} migration(s) "
                f"({', '.join(pending)}); run `digest db upgrade`"
            )
        try:
            with store.transaction() as session:
                found = health.report(
                    session,
                    settings,
                    datetime.now(UTC),
                    max_queue_age=timedelta(minutes=max_queue_minutes),
                    max_fetch_age=timedelta(hours=max_fetch_hours),
                )
        except SQLAlchemyError as exc:  # an outage between the two queries
            raise StoreError(f"cannot read the database: {str(exc).splitlines()[0]}") from None
    finally:
        store.close()
    if as_json:
        print(json.dumps(found.as_json(), ensure_ascii=False))
    else:
        _print_status(found)
    raise typer.Exit(STATUS_ATTENTION if found.problems else STATUS_OK)


def _print_status(found: object) -> None:
    from digest.store.reports import StatusReport, ago

    assert isinstance(found, StatusReport)
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
    _wide_console().print(fetches)
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
    for problem in found.problems:
        print(f"attention: {problem}")
    if not found.problems:
        print("all well")


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
    from digest.domain.profiles import build_profile
    from digest.store import subscribers

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
    [fetched] = _fetch_with_progress(settings, store, ["sample"])
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
    table = Table("subscriber", "interests", "papers", "top paper", title="demo digests")
    table.add_column("open in a browser", overflow="fold", min_width=30)
    with store.transaction() as session:
        rows = session.execute(
            select(Subscriber, Delivery).join(Delivery).order_by(Subscriber.email)
        ).all()
        from digest import compose
        from digest.store import subscribers

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
