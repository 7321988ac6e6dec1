"""Feedback: "more like this" / "fewer like this" from the mail, seeding a profile from
papers a reader already likes, and taking back what was learned.

Every change ends in ``digest.store.feedback.relearn``, in the same transaction, so the
learned state is always a function of the reader's choices. Papers a seed names that are
not stored yet are fetched from the arXiv API (the same source and fetcher as the daily
fetch); a paper fetched for a seed is no news, so it never enters anyone's next digest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from digest.app import access
from digest.app.services import Services
from digest.config import Settings
from digest.domain.profiles import Profile
from digest.domain.seeds import SeedList
from digest.errors import SourceError
from digest.ingest import merge_batch, upsert
from digest.models import Paper
from digest.sources.arxiv_api import ArxivApiSource
from digest.sources.http import Fetcher
from digest.store import Store, feedback, papers, subscribers

log = logging.getLogger(__name__)

REMOVABLE = (*feedback.REMOVABLE, "model-on", "forget")
# How far back a paper fetched for a seed counts as "first seen" when arXiv gives no date.
_OLD = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Judged:
    """A feedback link's paper and direction, and what the reader's profile now holds."""

    title: str
    authors: tuple[str, ...]
    canonical_id: str
    value: int  # +1 more like this, -1 fewer like this
    current: int | None  # the reader's choice on it now
    profile: Profile
    changed: bool = False


def look(services: Services, token: str) -> Judged:
    """What a feedback link is about (a GET: changes nothing)."""
    with services.store.transaction() as session:
        person, paper, value = access.feedback(session, services.tokens, token)
        current = feedback.choice(session, person, paper)
        profile = subscribers.profile_of(person)
        return Judged(
            paper.title, tuple(paper.authors), paper.canonical_id, value, current, profile
        )


def judge(services: Services, token: str, undo: bool) -> Judged:
    """Record the link's choice (or take it back) and relearn the profile."""
    now = services.clock()
    with services.store.transaction() as session:
        person, paper, value = access.feedback(session, services.tokens, token)
        if undo:
            changed = feedback.undo(session, person, paper)
        else:
            feedback.record(session, person, paper, value, now)
            changed = True
        if changed:
            feedback.relearn(session, person, services.settings.feedback, now)
        return Judged(
            paper.title,
            tuple(paper.authors),
            paper.canonical_id,
            value,
            feedback.choice(session, person, paper),
            subscribers.profile_of(person),
            changed,
        )


def take_back(services: Services, token: str, kind: str, value: str) -> None:
    """Remove a learned word or author for good, switch the personal model off or on, or
    ("forget") every choice and everything learned from them."""
    if kind not in REMOVABLE:
        raise ValueError(f"cannot remove {kind!r}")
    now = services.clock()
    with services.store.transaction() as session:
        person = access.manage(session, services.tokens, token)
        if kind == "forget":
            feedback.forget_all(session, person, now)
        else:
            feedback.remove(session, person, kind, value, services.settings.feedback, now)


# -- seeds ---------------------------------------------------------------------------------


@dataclass
class SeedPapers:
    papers: list[Paper]  # in the order of the ids
    fetched: int = 0  # fetched from arXiv just now
    unknown: list[str] = field(default_factory=list)  # ids arXiv does not know
    problem: str | None = None  # arXiv could not be asked (its ids are in ``unknown``)


def find_papers(
    settings: Settings,
    store: Store,
    ids: list[str],
    now: datetime,
    *,
    transport: httpx.BaseTransport | None = None,
) -> SeedPapers:
    """The stored papers for ``ids``, fetching the missing ones from the arXiv API."""
    with store.transaction() as session:
        known = set(papers.ids_by_canonical_ids(session, ids))
    missing = [i for i in ids if i not in known]
    result = SeedPapers([])
    if missing:
        try:
            result.fetched = _fetch(settings, store, missing, now, transport)
        except SourceError as exc:
            log.warning("seed: arXiv API failed: %s", exc.reason)
            result.problem = f"arXiv could not be reached ({exc.reason})"
    with store.transaction() as session:
        rows = papers.rows_by_canonical_ids(session, ids)
    result.papers = [rows[i] for i in ids if i in rows]
    result.unknown = [i for i in ids if i not in rows]
    return result


def _fetch(
    settings: Settings,
    store: Store,
    ids: list[str],
    now: datetime,
    transport: httpx.BaseTransport | None,
) -> int:
    api = settings.sources.arxiv_api.model_copy(update={"id_list": ids, "max_results": len(ids)})
    with Fetcher(settings.http, transport=transport) as fetcher:
        records = ArxivApiSource(api).fetch(fetcher, None)
    found, _skipped = merge_batch(records)
    with store.transaction() as session:
        by_id, by_title = papers.by_keys(
            session, (p.key for p in found), (p.title_key for p in found)
        )
        before = set(by_id)
        stats = upsert(session, found, by_id, by_title, now=now)
        session.flush()
        # A paper fetched because someone liked it is not news: dated by its arXiv date, it
        # never enters anyone's next digest as "new since yesterday".
        for paper in found:
            if paper.key in before:
                continue
            row = papers.row_by_canonical_id(session, paper.key)
            if row is not None and row.first_seen_at == now:
                published = paper.record.published_at or paper.record.updated_at
                row.first_seen_at = min(published, now) if published else now - _OLD
        return stats.new


@dataclass(frozen=True)
class SeedReport:
    added: tuple[str, ...]  # titles of the papers now marked "more like this"
    fetched: int
    unknown: tuple[str, ...]  # ids arXiv does not know (or could not be asked about)
    skipped: tuple[str, ...]  # entries or words without an arXiv id
    problem: str | None


def seed(
    services: Services,
    token: str,
    found: SeedList,
    *,
    transport: httpx.BaseTransport | None = None,
) -> SeedReport:
    """Mark the papers of a seed list "more like this" for the holder of a preferences link."""
    now = services.clock()
    looked_up = find_papers(services.settings, services.store, found.ids, now, transport=transport)
    with services.store.transaction() as session:
        person = access.manage(session, services.tokens, token)
        rows = papers.rows_by_canonical_ids(session, [p.canonical_id for p in looked_up.papers])
        liked = [rows[p.canonical_id] for p in looked_up.papers if p.canonical_id in rows]
        if liked:
            feedback.like_many(session, person, liked, services.settings.feedback, now)
    return SeedReport(
        added=tuple(p.title for p in looked_up.papers),
        fetched=looked_up.fetched,
        unknown=tuple(looked_up.unknown),
        skipped=tuple(found.skipped),
        problem=looked_up.problem,
    )


@dataclass(frozen=True, slots=True)
class Added:
    liked: int
    disliked: int
    fetched: int
    unknown: tuple[str, ...]
    problem: str | None


def add(
    settings: Settings,
    store: Store,
    email: str,
    liked: list[str],
    disliked: list[str],
    now: datetime,
    *,
    transport: httpx.BaseTransport | None = None,
) -> Added:
    """Liked and disliked papers for ``email`` (`digest profile --seed/--like/--dislike`)."""
    found = find_papers(settings, store, [*liked, *disliked], now, transport=transport)
    wanted = {p.canonical_id: (1 if p.canonical_id in liked else -1) for p in found.papers}
    with store.transaction() as session:
        person = subscribers.get(session, email)
        for canonical_id, paper in papers.rows_by_canonical_ids(session, list(wanted)).items():
            feedback.record(session, person, paper, wanted[canonical_id], now)
        if wanted:
            feedback.relearn(session, person, settings.feedback, now)
    return Added(
        sum(1 for v in wanted.values() if v > 0),
        sum(1 for v in wanted.values() if v < 0),
        found.fetched,
        tuple(found.unknown),
        found.problem,
    )
