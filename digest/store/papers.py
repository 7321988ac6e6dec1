"""Papers: the rows ingest writes, the cards ranking and rendering read, fetch bookkeeping."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.domain.items import PaperCard
from digest.models import FetchRun, HttpValidator, Paper

__all__ = ["Paper"]
from digest.store import chunks

Validators = dict[str, tuple[str | None, str | None]]  # url -> (etag, last-modified)


def card_of(paper: Paper) -> PaperCard:
    """What ranking and rendering need of a stored paper."""
    return PaperCard(
        paper_id=paper.id,
        canonical_id=paper.canonical_id,
        arxiv_id=paper.arxiv_id,
        title=paper.title,
        abstract=paper.abstract,
        authors=tuple(paper.authors),
        categories=tuple(paper.categories),
        upvotes=paper.hf_upvotes,
        ai_summary=paper.ai_summary,
        github_repo=paper.github_repo,
        sources=tuple(paper.sources),
        first_seen_at=paper.first_seen_at,
        announced_on=paper.announced_on,
    )


def by_keys(
    session: Session, canonical_ids: Iterable[str], title_keys: Iterable[str]
) -> tuple[dict[str, Paper], dict[str, Paper]]:
    """Existing rows for a batch: by canonical id, and by title key (an id-less row first,
    else the oldest; ``ingest.upsert`` lets only an id-less record claim an arXiv row)."""
    by_id: dict[str, Paper] = {}
    by_title: dict[str, Paper] = {}
    for chunk in chunks(list(set(canonical_ids))):
        for paper in session.scalars(select(Paper).where(Paper.canonical_id.in_(chunk))):
            by_id[paper.canonical_id] = paper
    for chunk in chunks(list(set(title_keys))):
        query = select(Paper).where(Paper.title_key.in_(chunk)).order_by(Paper.id)
        for paper in session.scalars(query):
            known = by_title.get(paper.title_key)
            if known is None or (known.arxiv_id is not None and paper.arxiv_id is None):
                by_title[paper.title_key] = paper
    return by_id, by_title


def cards_since(session: Session, since: datetime | None) -> list[PaperCard]:
    """Every paper first seen from ``since`` on (all of them for None), in id order."""
    query = select(Paper).order_by(Paper.id)
    if since is not None:
        query = query.where(Paper.first_seen_at >= since)
    return [card_of(p) for p in session.scalars(query)]


def newest_cards(session: Session, limit: int) -> list[PaperCard]:
    query = select(Paper).order_by(Paper.first_seen_at.desc(), Paper.id.desc()).limit(limit)
    return [card_of(p) for p in session.scalars(query)]


def cards_by_ids(session: Session, paper_ids: Iterable[int]) -> dict[int, PaperCard]:
    found: dict[int, PaperCard] = {}
    for chunk in chunks(list(set(paper_ids))):
        for paper in session.scalars(select(Paper).where(Paper.id.in_(chunk))):
            found[paper.id] = card_of(paper)
    return found


def card_by_canonical_id(session: Session, canonical_id: str) -> PaperCard | None:
    paper = session.scalar(select(Paper).where(Paper.canonical_id == canonical_id))
    return card_of(paper) if paper is not None else None


def row_by_canonical_id(session: Session, canonical_id: str) -> Paper | None:
    return session.scalar(select(Paper).where(Paper.canonical_id == canonical_id))


def rows_by_canonical_ids(session: Session, canonical_ids: Sequence[str]) -> dict[str, Paper]:
    found: dict[str, Paper] = {}
    for chunk in chunks(list(canonical_ids)):
        for paper in session.scalars(select(Paper).where(Paper.canonical_id.in_(chunk))):
            found[paper.canonical_id] = paper
    return found


def ids_by_canonical_ids(session: Session, canonical_ids: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in chunks(list(canonical_ids)):
        rows = session.execute(
            select(Paper.canonical_id, Paper.id).where(Paper.canonical_id.in_(chunk))
        )
        found.update((canonical, paper_id) for canonical, paper_id in rows)
    return found


def stamp(session: Session, since: datetime | None = None) -> tuple[object, ...]:
    """Changes whenever papers (from ``since`` on) are added or changed: a cache key."""
    query = select(func.count(Paper.id), func.max(Paper.id), func.max(Paper.last_seen_at))
    if since is not None:
        query = query.where(Paper.first_seen_at >= since)
    return tuple(session.execute(query).one())


def recent(
    session: Session, since: datetime | None = None, limit: int | None = None
) -> list[Paper]:
    """Stored papers, newest first."""
    query = select(Paper).order_by(Paper.first_seen_at.desc(), Paper.id.desc())
    if since is not None:
        query = query.where(Paper.first_seen_at >= since)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def count(session: Session) -> int:
    return session.scalar(select(func.count(Paper.id))) or 0


# -- fetch bookkeeping ----------------------------------------------------------------


def record_fetch(session: Session, run: FetchRun) -> None:
    session.add(run)


def validators(session: Session, urls: Iterable[str] | None = None) -> Validators:
    query = select(HttpValidator)
    if urls is not None:
        query = query.where(HttpValidator.url.in_(list(urls)))
    return {v.url: (v.etag, v.last_modified) for v in session.scalars(query)}


def save_validators(session: Session, found: Validators, now: datetime) -> None:
    for url, (etag, last_modified) in found.items():
        row = session.get(HttpValidator, url)
        if row is None:
            session.add(
                HttpValidator(url=url, etag=etag, last_modified=last_modified, stored_at=now)
            )
        else:
            row.etag, row.last_modified, row.stored_at = etag, last_modified, now
