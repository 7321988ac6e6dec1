"""Paper vectors, computed once when a paper is stored, and the semantic match rankers get.

Only with the ``semantic`` extra (``digest.semantic``); without it every function here is a
no-op that returns nothing, and ranking runs on keywords alone (the log says so once).
Vectors live in ``paper_embeddings`` (one row per paper, with the model's name: a new model
means re-embedding) as 384 little-endian float32.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from digest.config import Settings
from digest.domain.items import PaperCard
from digest.models import Paper, PaperEmbedding
from digest.semantic import (
    MODEL_ID,
    Embedder,
    SemanticMatch,
    embed_papers,
    vector_bytes,
    vector_from_bytes,
)
from digest.store import Store

log = logging.getLogger(__name__)

BATCH = 64  # papers embedded and committed at a time: a crash loses at most one batch
_CHUNK = 500  # ids per IN (...) query

_shared: Embedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> Embedder:
    """One embedder per process: the model loads once, whoever asks first."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Embedder()
        return _shared


def enabled(settings: Settings, embedder: Embedder | None = None) -> Embedder | None:
    """The embedder to use, or None: semantic matching off in the settings, or not installed."""
    if not settings.ranking.semantic:
        return None
    embedder = embedder or shared_embedder()
    return embedder if embedder.available() else None


def embed_new(
    settings: Settings, store: Store, embedder: Embedder | None = None, limit: int | None = None
) -> int:
    """Embed and store the papers that have no vector from the current model yet.

    Returns how many were embedded (0 without the extra). Never raises: a failing model must
    not stop the fetch that called it; the papers are embedded on a later call.
    """
    model = enabled(settings, embedder)
    if model is None:
        return 0
    done = 0
    try:
        while limit is None or done < limit:
            with store.transaction() as session:
                have = select(PaperEmbedding.paper_id).where(PaperEmbedding.model == MODEL_ID)
                size = BATCH if limit is None else min(BATCH, limit - done)
                papers = list(
                    session.scalars(
                        select(Paper).where(Paper.id.not_in(have)).order_by(Paper.id).limit(size)
                    )
                )
                if not papers:
                    break
                _store(session, papers, model)
                done += len(papers)
    except IntegrityError:  # another process (a second worker) stored these meanwhile
        log.info("papers embedded by another process; %d embedded here", done)
    except Exception:  # the model or the database: logged, retried on the next call
        log.exception("embedding papers failed after %d; they will be embedded later", done)
    if done:
        log.info("embedded %d papers", done)
    return done


def _store(session: object, papers: Sequence[Paper], embedder: Embedder) -> None:
    from digest import compose

    vectors = embed_papers([compose.paper_card(p) for p in papers], embedder)
    now = datetime.now(UTC)
    for paper, vector in zip(papers, vectors, strict=True):
        row = session.get(PaperEmbedding, paper.id)  # type: ignore[attr-defined]
        if row is None:
            session.add(  # type: ignore[attr-defined]
                PaperEmbedding(
                    paper_id=paper.id, model=MODEL_ID, vector=vector_bytes(vector), created_at=now
                )
            )
        else:  # from an older model
            row.model, row.vector, row.created_at = MODEL_ID, vector_bytes(vector), now


def vectors(store: Store, paper_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """paper id -> stored vector of the current model, for those that have one."""
    found: dict[int, np.ndarray] = {}
    ids = list(paper_ids)
    with store.transaction() as session:
        for start in range(0, len(ids), _CHUNK):
            rows = session.execute(
                select(PaperEmbedding.paper_id, PaperEmbedding.vector).where(
                    PaperEmbedding.paper_id.in_(ids[start : start + _CHUNK]),
                    PaperEmbedding.model == MODEL_ID,
                )
            )
            found.update((pid, vector_from_bytes(data)) for pid, data in rows)
    return found


def vectors_by_canonical_id(store: Store, canonical_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """canonical id -> stored vector (liked papers, for the profiles that liked them)."""
    found: dict[str, np.ndarray] = {}
    ids = list(dict.fromkeys(canonical_ids))
    with store.transaction() as session:
        for start in range(0, len(ids), _CHUNK):
            rows = session.execute(
                select(Paper.canonical_id, PaperEmbedding.vector)
                .join(PaperEmbedding, PaperEmbedding.paper_id == Paper.id)
                .where(
                    Paper.canonical_id.in_(ids[start : start + _CHUNK]),
                    PaperEmbedding.model == MODEL_ID,
                )
            )
            found.update((cid, vector_from_bytes(data)) for cid, data in rows)
    return found


def semantic_for(
    settings: Settings,
    store: Store,
    cards: Sequence[PaperCard],
    *,
    embedder: Embedder | None = None,
    embed_missing: bool = True,
) -> SemanticMatch | None:
    """The ``SemanticMatch`` for a ranker over ``cards``, or None (keywords alone).

    ``embed_missing`` embeds (and stores) the cards' papers that have no vector yet (stored
    before the extra was installed); the live preview passes False and matches only the
    papers that have one, so a page never waits for the model.
    """
    model = enabled(settings, embedder)
    if model is None:
        return None
    found: Mapping[int, np.ndarray] = vectors(store, [c.paper_id for c in cards])
    if embed_missing and len(found) < len(cards):
        embed_new(settings, store, model)
        found = vectors(store, [c.paper_id for c in cards])
    return SemanticMatch.from_settings(
        found,
        model.embed,
        settings.ranking,
        stored_vectors=lambda ids: vectors_by_canonical_id(store, ids),
    )
