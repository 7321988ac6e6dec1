"""Normalise, merge and upsert: one ``Paper`` row per canonical id, whatever reported it.

Text is cleaned here, once; later stages trust it. Records of one paper from several
sources (or several days) merge into the one row: Hugging Face brings upvotes and a TL;DR,
arXiv brings categories and the authoritative text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from digest.domain.text import clean_text, parse_arxiv_id, title_key, valid_doi, valid_github
from digest.models import Paper
from digest.sources.records import PaperIn
from digest.store import Session

log = logging.getLogger(__name__)

# Caps on what one paper may bring; a feed is not trusted to be reasonable.
MAX_TITLE = 500
MAX_ABSTRACT = 6000
MAX_AUTHORS = 200
MAX_AUTHOR = 200
MAX_CATEGORIES = 20
MAX_SUMMARY = 600
MAX_NOTE = 1000

# Whose text (title, abstract, authors) wins when sources disagree.
TEXT_RANK = {"sample": 0, "huggingface": 1, "arxiv_rss": 2, "arxiv_api": 3}


@dataclass(slots=True)
class CleanPaper:
    """A record after cleaning, keyed for merging."""

    key: str  # canonical id
    arxiv_id: str | None
    version: int | None
    title_key: str
    record: PaperIn
    sources: list[str] = field(default_factory=list)


@dataclass(slots=True)
class IngestStats:
    fetched: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0


def clean(record: PaperIn) -> CleanPaper | None:
    """Clean one record, or None (logged) when nothing usable is left."""
    title = clean_text(record.title, MAX_TITLE)
    if not title:
        log.warning("%s: skipped a record with no title (id %r)", record.source, record.arxiv_id)
        return None
    parsed = parse_arxiv_id(record.arxiv_id)
    if record.arxiv_id and parsed is None:
        log.warning("%s: ignored an invalid arXiv id %r", record.source, record.arxiv_id)
    authors = [clean_text(name, MAX_AUTHOR) for name in record.authors[:MAX_AUTHORS]]
    categories = [clean_text(c, 40) for c in record.categories[:MAX_CATEGORIES]]
    cleaned = replace(
        record,
        title=title,
        abstract=clean_text(record.abstract, MAX_ABSTRACT),
        authors=[a for a in authors if a],
        categories=list(dict.fromkeys(c for c in categories if c)),
        doi=valid_doi(record.doi),
        journal_ref=clean_text(record.journal_ref, MAX_NOTE) or None,
        comment=clean_text(record.comment, MAX_NOTE) or None,
        ai_summary=clean_text(record.ai_summary, MAX_SUMMARY) or None,
        github_repo=valid_github(record.github_repo),
        upvotes=record.upvotes if isinstance(record.upvotes, int) and record.upvotes >= 0 else None,
    )
    tkey = title_key(title)
    if parsed:
        arxiv_id, version = parsed
        return CleanPaper(arxiv_id, arxiv_id, version, tkey, cleaned, [record.source])
    return CleanPaper(f"title:{tkey}", None, None, tkey, cleaned, [record.source])


def merge_batch(records: Iterable[PaperIn]) -> tuple[list[CleanPaper], int]:
    """Clean and merge a batch so each paper appears once; returns (papers, skipped)."""
    merged: dict[str, CleanPaper] = {}
    by_title: dict[str, str] = {}
    skipped = 0
    pending_idless: list[CleanPaper] = []
    for record in records:
        paper = clean(record)
        if paper is None:
            skipped += 1
        elif paper.arxiv_id is None:
            pending_idless.append(paper)
        elif paper.key in merged:
            merged[paper.key] = _merge(merged[paper.key], paper)
        else:
            merged[paper.key] = paper
            by_title.setdefault(paper.title_key, paper.key)
    # An id-less record joins the arXiv record of the same title, if the batch has one.
    for paper in pending_idless:
        key = by_title.get(paper.title_key, paper.key)
        merged[key] = _merge(merged[key], paper) if key in merged else paper
    return list(merged.values()), skipped


def _merge(into: CleanPaper, other: CleanPaper) -> CleanPaper:
    a, b = into.record, other.record
    # The record with the better text leads; the other fills what it lacks.
    lead, rest = (b, a) if TEXT_RANK.get(b.source, 0) > TEXT_RANK.get(a.source, 0) else (a, b)
    combined = replace(
        lead,
        abstract=lead.abstract or rest.abstract,
        authors=lead.authors or rest.authors,
        categories=_union(_arxiv_first(lead, rest)),
        published_at=lead.published_at or rest.published_at,
        updated_at=_latest(lead.updated_at, rest.updated_at),
        announced_on=_earliest(lead.announced_on, rest.announced_on),
        doi=lead.doi or rest.doi,
        journal_ref=lead.journal_ref or rest.journal_ref,
        comment=lead.comment or rest.comment,
        upvotes=_latest_upvotes(a, b),
        ai_summary=lead.ai_summary or rest.ai_summary,
        github_repo=lead.github_repo or rest.github_repo,
    )
    version = max(v for v in (into.version, other.version, 0) if v is not None) or None
    return CleanPaper(
        into.key if into.arxiv_id else other.key,
        into.arxiv_id or other.arxiv_id,
        version,
        into.title_key if into.arxiv_id else other.title_key,
        combined,
        list(dict.fromkeys(into.sources + other.sources)),
    )


def _arxiv_first(lead: PaperIn, rest: PaperIn) -> list[list[str]]:
    # arXiv knows a paper's categories (primary first); others only echo them.
    if rest.source.startswith("arxiv") and not lead.source.startswith("arxiv"):
        return [rest.categories, lead.categories]
    return [lead.categories, rest.categories]


def _union(lists: list[list[str]]) -> list[str]:
    return list(dict.fromkeys(item for items in lists for item in items))[:MAX_CATEGORIES]


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((d for d in (a, b) if d is not None), default=None)


def _earliest(a: date | None, b: date | None) -> date | None:
    return min((d for d in (a, b) if d is not None), default=None)


def _latest_upvotes(a: PaperIn, b: PaperIn) -> int | None:
    # The later record's count is the fresher one; counts only grow, so max is safe.
    values = [v for v in (a.upvotes, b.upvotes) if v is not None]
    return max(values) if values else None


def upsert(
    session: Session,
    papers: list[CleanPaper],
    existing_by_id: dict[str, Paper],
    existing_by_title: dict[str, Paper],
    now: datetime | None = None,
) -> IngestStats:
    """Write merged papers: insert new rows, update known ones; count what happened."""
    now = now or datetime.now(UTC)
    stats = IngestStats(fetched=len(papers))
    for paper in papers:
        row = existing_by_id.get(paper.key)
        if row is None and paper.arxiv_id is not None:
            row = existing_by_title.get(paper.title_key)  # an id-less row of this paper
        if row is None and paper.arxiv_id is None:
            row = existing_by_title.get(paper.title_key)
        if row is None:
            session.add(_new_row(paper, now))
            stats.new += 1
            continue
        if _update_row(row, paper, now):
            stats.updated += 1
        else:
            stats.unchanged += 1
    return stats


def _new_row(paper: CleanPaper, now: datetime) -> Paper:
    r = paper.record
    return Paper(
        canonical_id=paper.key,
        arxiv_id=paper.arxiv_id,
        title_key=paper.title_key,
        version=paper.version,
        title=r.title,
        abstract=r.abstract,
        authors=r.authors,
        categories=r.categories,
        published_at=r.published_at,
        updated_at=r.updated_at,
        announced_on=r.announced_on,
        first_seen_at=now,
        last_seen_at=now,
        doi=r.doi,
        journal_ref=r.journal_ref,
        comment=r.comment,
        hf_upvotes=r.upvotes,
        ai_summary=r.ai_summary,
        github_repo=r.github_repo,
        sources=list(paper.sources),
        text_source=r.source,
    )


_TRACKED = (
    "canonical_id", "arxiv_id", "title_key", "version", "title", "abstract", "authors",
    "categories", "published_at", "updated_at", "announced_on", "doi", "journal_ref",
    "comment", "hf_upvotes", "ai_summary", "github_repo", "sources", "text_source",
)  # fmt: skip


def _update_row(row: Paper, paper: CleanPaper, now: datetime) -> bool:
    """Merge ``paper`` into ``row``; True when anything a reader could see changed."""
    before = {name: getattr(row, name) for name in _TRACKED}
    r = paper.record
    if row.arxiv_id is None and paper.arxiv_id is not None:
        # The id-less paper has turned up with its arXiv id: the row takes it on.
        row.arxiv_id, row.canonical_id = paper.arxiv_id, paper.key
    if TEXT_RANK.get(r.source, 0) >= TEXT_RANK.get(row.text_source, 0):
        row.title = r.title
        row.abstract = r.abstract or row.abstract
        row.authors = r.authors or row.authors
        row.text_source = r.source
        row.title_key = paper.title_key
    else:
        row.abstract = row.abstract or r.abstract
        row.authors = row.authors or r.authors
    if r.source.startswith("arxiv"):
        row.categories = _union([r.categories, row.categories])
    else:
        row.categories = _union([row.categories, r.categories])
    if paper.version and (row.version or 0) < paper.version:
        row.version = paper.version
    row.published_at = row.published_at or r.published_at
    row.updated_at = _latest(row.updated_at, r.updated_at)
    row.announced_on = _earliest(row.announced_on, r.announced_on)
    row.doi = row.doi or r.doi
    row.journal_ref = r.journal_ref or row.journal_ref
    row.comment = r.comment or row.comment
    if r.upvotes is not None:
        row.hf_upvotes = r.upvotes
    row.ai_summary = r.ai_summary or row.ai_summary
    row.github_repo = r.github_repo or row.github_repo
    row.sources = list(dict.fromkeys([*row.sources, *paper.sources]))
    row.last_seen_at = now
    return any(getattr(row, name) != before[name] for name in _TRACKED)
