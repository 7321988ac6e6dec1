"""Fetch the sources and store what they brought; one failing source never stops the rest.

Each source turns an HTTP answer into ``PaperIn`` records (``digest.sources``); ingest
cleans and merges them (``digest.ingest``); the store keeps one row per paper. The new
papers get their vectors right away when semantic matching is installed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import httpx

from digest.app import meaning
from digest.config import Settings
from digest.errors import Conflict, SourceError
from digest.ingest import merge_batch, upsert
from digest.models import FetchRun
from digest.sources.base import build_source
from digest.sources.http import Fetcher
from digest.store import Store, papers
from digest.store.locks import try_lock

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FetchSummary:
    source: str
    status: str  # ok, not_modified, failed
    fetched: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    error: str | None = None
    seconds: float = 0.0


def fetch(
    settings: Settings,
    store: Store,
    names: Sequence[str] | None = None,
    day: date | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    on_source: Callable[[str], None] | None = None,
) -> list[FetchSummary]:
    """Fetch each source (the enabled ones, or ``names``) and store what it brought."""
    summaries = []
    for name in names or settings.sources.enabled:
        if on_source:
            on_source(name)
        summaries.append(_fetch_one(settings, store, name, day, transport))
    return summaries


def fetch_alone(settings: Settings, store: Store) -> list[FetchSummary] | None:
    """Fetch the enabled sources unless another process is fetching right now (a
    PostgreSQL advisory lock; SQLite has one process): None when it was skipped."""
    with try_lock(store, "fetch") as taken:
        return fetch(settings, store) if taken else None


def _fetch_one(
    settings: Settings,
    store: Store,
    name: str,
    day: date | None,
    transport: httpx.BaseTransport | None,
) -> FetchSummary:
    started = datetime.now(UTC)
    clock = time.monotonic()
    source = build_source(name, settings)
    try:
        with store.transaction() as session:
            known = papers.validators(session)
        with Fetcher(settings.http, transport=transport, validators=known) as fetcher:
            records = source.fetch(fetcher, day)
            learned = fetcher.learned
            not_modified = fetcher.not_modified
    except SourceError as exc:
        return _failed(store, name, started, clock, exc.reason)
    except Exception as exc:  # a bug in one source must not stop the others
        log.exception("%s: unexpected error while fetching", name)
        return _failed(store, name, started, clock, f"internal error: {exc!r}")

    found, skipped = merge_batch(records)
    status = "not_modified" if not_modified and not records else "ok"
    for attempt in (1, 2):
        try:
            with store.transaction() as session:
                by_id, by_title = papers.by_keys(
                    session, (p.key for p in found), (p.title_key for p in found)
                )
                stats = upsert(session, found, by_id, by_title, now=started)
                papers.save_validators(session, learned, started)
                papers.record_fetch(
                    session,
                    _run(
                        name,
                        started,
                        status,
                        fetched=len(records),
                        new=stats.new,
                        updated=stats.updated,
                    ),
                )
            break
        except Conflict:
            # Another process stored one of these papers between our read and our write;
            # reading again sees its row and updates it instead.
            if attempt == 2:
                raise
    if stats.new:
        # Embedded once, when stored (with the semantic extra; a no-op without it). A failing
        # model is logged and the papers are embedded on a later call: the fetch stands.
        meaning.embed_new(settings, store)
    return FetchSummary(
        name,
        status,
        fetched=len(records),
        new=stats.new,
        updated=stats.updated,
        unchanged=stats.unchanged,
        skipped=skipped,
        seconds=time.monotonic() - clock,
    )


def _run(name: str, started: datetime, status: str, **outcome: object) -> FetchRun:
    """The record of one fetch run, finished now."""
    return FetchRun(
        source=name, started_at=started, finished_at=datetime.now(UTC), status=status, **outcome
    )


def _failed(store: Store, name: str, started: datetime, clock: float, reason: str) -> FetchSummary:
    log.error("%s: fetch failed: %s", name, reason)
    with store.transaction() as session:
        papers.record_fetch(session, _run(name, started, "failed", error=reason))
    return FetchSummary(name, "failed", error=reason, seconds=time.monotonic() - clock)


def stored_papers(
    store: Store, since: datetime | None, limit: int
) -> tuple[list[papers.Paper], int]:
    """Stored papers (first seen from ``since`` on), newest first, and how many there are
    in all (`digest papers`)."""
    with store.transaction() as session:
        return papers.recent(session, since=since, limit=limit), papers.count(session)
