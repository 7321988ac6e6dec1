"""Paper vectors, one row per paper with the model's name (a new model means re-embedding),
stored as little-endian float32."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.domain.items import PaperCard
from digest.models import Paper, PaperEmbedding
from digest.store import chunks
from digest.store.papers import card_of


def without_vector(session: Session, model: str, limit: int) -> list[PaperCard]:
    """Up to ``limit`` papers that have no vector from ``model`` yet, oldest first."""
    have = select(PaperEmbedding.paper_id).where(PaperEmbedding.model == model)
    query = select(Paper).where(Paper.id.not_in(have)).order_by(Paper.id).limit(limit)
    return [card_of(p) for p in session.scalars(query)]


def save(
    session: Session,
    vectors: Sequence[tuple[int, bytes]],
    model: str,
    now: datetime,
) -> None:
    """Store (paper id, vector bytes) pairs, replacing an older model's vector."""
    for paper_id, data in vectors:
        row = session.get(PaperEmbedding, paper_id)
        if row is None:
            session.add(PaperEmbedding(paper_id=paper_id, model=model, vector=data, created_at=now))
        else:
            row.model, row.vector, row.created_at = model, data, now


def vectors(
    session: Session,
    paper_ids: Sequence[int],
    model: str,
    decode: Callable[[bytes], np.ndarray],
) -> dict[int, np.ndarray]:
    """paper id -> stored vector of ``model``, for those that have one."""
    found: dict[int, np.ndarray] = {}
    for chunk in chunks(list(paper_ids)):
        rows = session.execute(
            select(PaperEmbedding.paper_id, PaperEmbedding.vector).where(
                PaperEmbedding.paper_id.in_(chunk), PaperEmbedding.model == model
            )
        )
        found.update((pid, decode(data)) for pid, data in rows)
    return found


def vectors_by_canonical_id(
    session: Session,
    canonical_ids: Sequence[str],
    model: str,
    decode: Callable[[bytes], np.ndarray],
) -> dict[str, np.ndarray]:
    """canonical id -> stored vector (liked papers, for the profiles that liked them)."""
    found: dict[str, np.ndarray] = {}
    for chunk in chunks(list(dict.fromkeys(canonical_ids))):
        rows = session.execute(
            select(Paper.canonical_id, PaperEmbedding.vector)
            .join(PaperEmbedding, PaperEmbedding.paper_id == Paper.id)
            .where(Paper.canonical_id.in_(chunk), PaperEmbedding.model == model)
        )
        found.update((cid, decode(data)) for cid, data in rows)
    return found


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(PaperEmbedding)) or 0
