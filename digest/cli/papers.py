"""`digest fetch` and `digest papers`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from digest.cli.common import State, app, console, parse_day, start_of, wide_console
from digest.config import SOURCE_NAMES
from digest.errors import ValidationError

if TYPE_CHECKING:
    from digest.models import Paper


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
    from digest.cli.progress import fetch_with_progress

    state: State = ctx.obj
    for name in source or []:
        if name not in SOURCE_NAMES:
            raise ValidationError(
                f"--source: unknown source {name!r}; choose from {', '.join(SOURCE_NAMES)}"
            )
    listing_day = parse_day(day)
    with state.opened() as store:
        summaries = fetch_with_progress(state.settings, store, source or None, listing_day)
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
    from digest.app.fetching import stored_papers

    state: State = ctx.obj
    with state.opened() as store:
        rows, total = stored_papers(store, start_of(parse_day(since, "--since")), limit)
    if as_json:
        for p in rows:
            print(json.dumps(_paper_json(p), ensure_ascii=False))
        return
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
    wide_console().print(table)


def _authors(names: list[str]) -> str:
    if len(names) > 3:
        return f"{names[0]} et al. ({len(names)})"
    return ", ".join(names)


def _paper_json(p: Paper) -> dict[str, object]:
    from digest.domain import paper_links

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
