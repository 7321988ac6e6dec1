"""Normalise, merge and upsert: one ``Paper`` row per canonical id, whatever reported it.

Text is cleaned here, once; later stages trust it. Records of one paper from several
sources (or several days) merge into the one row: Hugging Face brings upvotes and a TL;DR,
arXiv brings categories and the authoritative text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime
from typing import Any

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
    """Clean and merge a batch so each paper appears once; returns (papers, skipped).

    Records join in the order they came, by the rule ``upsert`` applies to stored rows, so
    one fetch of two sightings stores what two fetches of them would."""
    merged: dict[str, CleanPaper] = {}
    by_title: dict[str, str] = {}  # title key -> key in merged: an id-less paper first
    skipped = 0
    for record in records:
        paper = clean(record)
        if paper is None:
            skipped += 1
            continue
        known = merged.get(paper.key) or merged.get(by_title.get(paper.title_key, ""))
        if known is not None and known.key != paper.key and known.arxiv_id and paper.arxiv_id:
            known = None  # two arXiv papers that share a title stay two
        if known is not None:
            del merged[known.key]
            paper = _merge(known, paper)
        merged[paper.key] = paper
        held = merged.get(by_title.get(paper.title_key, ""))
        if held is None or (held.arxiv_id is not None and paper.arxiv_id is None):
            by_title[paper.title_key] = paper.key
    return list(merged.values()), skipped


def _merge(old: CleanPaper, new: CleanPaper) -> CleanPaper:
    """The one merge rule: two records of one paper in a batch (``new`` came later), or a
    stored row (``old``) and today's record of it."""
    a, b = old.record, new.record
    # The record with the better text leads (the newer on a tie); the other fills what it
    # lacks. Facts that change with versions come from the newer record when it has them;
    # facts that do not (the DOI, the first submission) stay as first known.
    lead, rest = (b, a) if TEXT_RANK.get(b.source, 0) >= TEXT_RANK.get(a.source, 0) else (a, b)
    combined = replace(
        lead,
        abstract=lead.abstract or rest.abstract,
        authors=lead.authors or rest.authors,
        categories=_union(_arxiv_first(lead, rest)),
        published_at=a.published_at or b.published_at,
        updated_at=_latest(a.updated_at, b.updated_at),
        announced_on=_earliest(a.announced_on, b.announced_on),
        doi=a.doi or b.doi,
        journal_ref=b.journal_ref or a.journal_ref,
        comment=b.comment or a.comment,
        upvotes=_most_upvotes(a, b),
        ai_summary=b.ai_summary or a.ai_summary,
        github_repo=b.github_repo or a.github_repo,
    )
    version = max(v for v in (old.version, new.version, 0) if v is not None) or None
    keyed = old if old.arxiv_id or not new.arxiv_id else new  # an arXiv id, once known, stays
    return CleanPaper(
        keyed.key,
        keyed.arxiv_id,
        version,
        new.title_key if lead is b else old.title_key,  # the key follows the title kept
        combined,
        list(dict.fromkeys(old.sources + new.sources)),
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


def _most_upvotes(a: PaperIn, b: PaperIn) -> int | None:
    # Counts only grow, so the larger is the fresher, whatever order the records came in
    # (a backfilled older listing does not set a count back).
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
        if row is None:
            # By title, as merge_batch joins records: an id-less record joins the paper of
            # its title, and an arXiv record takes over an id-less row; two arXiv papers
            # that share a title ("Erratum") stay two.
            row = existing_by_title.get(paper.title_key)
            if row is not None and row.arxiv_id is not None and paper.arxiv_id is not None:
                row = None
        if row is None:
            session.add(_new_row(paper, now))
            stats.new += 1
            continue
        if _update_row(row, paper, now):
            stats.updated += 1
        else:
            stats.unchanged += 1
    return stats


# PaperIn's fields as the paper table names them; announce_type is not kept.
_COLUMN = {"source": "text_source", "upvotes": "hf_upvotes"}
_KEPT = tuple(f.name for f in fields(PaperIn) if f.name != "announce_type")


def _columns(paper: CleanPaper) -> dict[str, Any]:
    """The row's values for a merged paper (all but the sighting times)."""
    values = {_COLUMN.get(name, name): getattr(paper.record, name) for name in _KEPT}
    values.update(
        canonical_id=paper.key,
        arxiv_id=paper.arxiv_id,
        title_key=paper.title_key,
        version=paper.version,
        sources=list(paper.sources),
    )
    return values


def _as_clean(row: Paper) -> CleanPaper:
    """A stored row as a record, so that it merges by the same rule as a batch does."""
    record = PaperIn(**{name: getattr(row, _COLUMN.get(name, name)) for name in _KEPT})
    return CleanPaper(
        row.canonical_id, row.arxiv_id, row.version, row.title_key, record, list(row.sources)
    )


def _new_row(paper: CleanPaper, now: datetime) -> Paper:
    return Paper(**_columns(paper), first_seen_at=now, last_seen_at=now)


def _update_row(row: Paper, paper: CleanPaper, now: datetime) -> bool:
    """Merge ``paper`` into ``row``; True when anything a reader could see changed."""
    changed = False
    for name, value in _columns(_merge(_as_clean(row), paper)).items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    row.last_seen_at = now
    return changed
