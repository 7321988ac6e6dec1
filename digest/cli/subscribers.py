"""`digest subscribe`, `subscribers`, `unsubscribe`, `profile` and `reactivate`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from digest.cli.common import State, app, wide_console
from digest.errors import ValidationError

if TYPE_CHECKING:
    from digest.models import Subscriber

# The limits are digest.domain.profiles' MAX_TERM_CHARS and MAX_PHRASE_WORDS, written out so
# that `--help` need not import the domain (tests/cli checks they agree).
IncludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        "-i",
        help='a word or phrase, optional weight: "graph neural network"^2; a term of more '
        "than six words is a description, an interest in a sentence (up to 300 "
        "characters; quote it if it has a comma: commas separate terms)",
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude", "-x", help="a word or phrase (at most six words) that vetoes a paper"
    ),
]
CategoryOpt = Annotated[
    list[str] | None, typer.Option("--category", help="an arXiv category or archive: cs.LG, hep-th")
]
AuthorOpt = Annotated[list[str] | None, typer.Option("--author", help="an author to follow")]
TrendingOpt = Annotated[
    bool | None,
    typer.Option("--also-trending/--no-also-trending", help='add "also trending today"'),
]
SecondLookOpt = Annotated[
    bool | None,
    typer.Option(
        "--second-look/--no-second-look",
        help='"worth another look": a paper sent before, once, when it has news (default on)',
    ),
]


def profile_changes(
    include: list[str] | None,
    exclude: list[str] | None,
    category: list[str] | None,
    author: list[str] | None,
    also_trending: bool | None,
    second_look: bool | None,
    description: str | None = None,
) -> dict[str, Any]:
    """The profile parts the shared options gave, by the profile's names (an option not
    given is None, and ``profiles.merge`` keeps that part as it was)."""
    given = {
        "include": include,
        "exclude": exclude,
        "categories": category,
        "authors": author,
        "also_trending": also_trending,
        "second_look": second_look,
        "description": description,
    }
    return {name: value for name, value in given.items() if value is not None}


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
    also_trending: TrendingOpt = None,
    second_look: SecondLookOpt = None,
) -> None:
    """Subscribe EMAIL (active at once: the CLI skips the emailed confirmation), or update it."""
    from digest.domain import addresses
    from digest.domain.profiles import build_profile
    from digest.domain.schedules import Schedule

    # What can be checked without the database is checked first: a typo is answered at
    # once, before the database and ranking libraries load.
    addresses.normalise(email)
    build_profile(include or (), exclude or (), category or (), author or ())
    if tz is not None or hour is not None:
        Schedule.checked(tz or "UTC", 7 if hour is None else hour)

    from digest.app import subscriptions

    state: State = ctx.obj
    with state.opened() as store:
        person, created = subscriptions.subscribe(
            store,
            Schedule.default(state.settings.subscribers),
            email,
            profile_changes(include, exclude, category, author, also_trending, second_look),
            {
                "timezone": tz,
                "send_hour": hour,
                "weekday": weekly,
                "max_papers": max_papers,
                "send_when_empty": send_when_empty,
            },
            datetime.now(UTC),
        )
    verb = "subscribed" if created else "updated"
    print(f"{verb} {person.email}: {_when(person)}; {_profile(person).describe()}")


def _profile(person: Subscriber) -> Any:
    from digest.domain.profiles import Profile

    return Profile.from_json(person.profile)


def _when(person: Subscriber) -> str:
    from digest.domain.schedules import WEEKDAYS

    day = "daily" if person.frequency == "daily" else f"weekly on {WEEKDAYS[person.weekday or 0]}"
    hour = f"{person.send_hour:02d}:00 {person.timezone}"
    return f"{day} at {hour}, up to {person.max_papers} papers"


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
    from digest.app import subscriptions
    from digest.domain.schedules import WEEKDAYS

    state: State = ctx.obj
    with state.opened() as store:
        rows = subscriptions.listing(store, "bounced" if bounced else status)
    data = [
        {
            "email": s.email,
            "status": s.status,
            "timezone": s.timezone,
            "hour": s.send_hour,
            "frequency": s.frequency
            if s.frequency == "daily"
            else f"weekly:{WEEKDAYS[s.weekday or 0]}",
            "max_papers": s.max_papers,
            "topics": _profile(s).describe(),
            "created_at": s.created_at.isoformat(timespec="seconds"),
            "bounces": s.bounce_count,
            "last_bounce_at": s.last_bounce_at.isoformat(timespec="seconds")
            if s.last_bounce_at
            else None,
        }
        for s in rows
    ]
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
    wide_console().print(table)


@app.command()
def unsubscribe(
    ctx: typer.Context, email: Annotated[str, typer.Argument(help="the address to stop mailing")]
) -> None:
    """Stop mailing EMAIL (its history is kept; `digest subscribe` brings it back)."""
    from digest.app import subscriptions

    state: State = ctx.obj
    with state.opened() as store:
        address, changed = subscriptions.stop(store, email, datetime.now(UTC))
    print(f"unsubscribed {address}" if changed else f"{address} was already unsubscribed")


@app.command()
def profile(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="whose profile")],
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    category: CategoryOpt = None,
    author: AuthorOpt = None,
    also_trending: TrendingOpt = None,
    second_look: SecondLookOpt = None,
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
    from digest.app import feedback, subscriptions

    state: State = ctx.obj
    liked = _seed_ids(seed, like)
    disliked = _seed_ids(None, dislike)
    asked = profile_changes(
        include, exclude, category, author, also_trending, second_look, description
    )
    if clear:
        asked["clear"] = True
    now = datetime.now(UTC)
    with state.opened() as store:
        address, shown = subscriptions.update_profile(store, email, asked, now)
        if liked or disliked:
            added = feedback.add(state.settings, store, address, liked, disliked, now)
            if added.problem:
                print(f"warning: {added.problem}", file=sys.stderr)
            for missing in added.unknown:
                print(f"not found on arXiv: {missing}", file=sys.stderr)
            print(
                f"added {added.liked} liked and {added.disliked} disliked paper(s)"
                + (f" ({added.fetched} fetched from arXiv)" if added.fetched else "")
            )
            address, shown = subscriptions.update_profile(store, address, {}, now)
    changed = bool(asked or liked or disliked)
    table = Table("", "", title=f"profile of {address}" + (" (updated)" if changed else ""))
    table.add_row("include", ", ".join(str(t) for t in shown.include) or "—")
    table.add_row("exclude", ", ".join(shown.exclude) or "—")
    table.add_row("categories", ", ".join(shown.categories) or "—")
    table.add_row("authors", "; ".join(shown.authors) or "—")
    table.add_row("also trending", "yes" if shown.also_trending else "no")
    table.add_row("worth another look", "yes" if shown.second_look else "no")
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
    wide_console().print(table)


def _seed_ids(path: Path | None, given: list[str] | None) -> list[str]:
    """arXiv ids from a seed file and/or --like/--dislike options; bad input is an error."""
    from digest.domain.seeds import SeedError, read_seed

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


@app.command()
def reactivate(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="a bounced address that works again")],
) -> None:
    """Mail a bounced address again (its bounce count starts from zero)."""
    from digest.app import operator

    state: State = ctx.obj
    with state.opened() as store:
        address = operator.reactivate(store, email, datetime.now(UTC))
    print(f"reactivated {address}")
