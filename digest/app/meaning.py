"""Paper vectors, computed once when a paper is stored, and the semantic match rankers get.

Only with the ``semantic`` extra (``digest.semantic``); without it every function here is a
no-op that returns nothing, and ranking runs on keywords alone (the log says so once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

from digest.config import Settings
from digest.domain.items import PaperCard
from digest.errors import Conflict
from digest.ranking.semantic import (
    MODEL_ID,
    Embedder,
    SemanticMatch,
    embed_papers,
    vector_bytes,
    vector_from_bytes,
)
from digest.store import Store, embeddings

log = logging.getLogger(__name__)

BATCH = 64  # papers embedded and committed at a time: a crash loses at most one batch

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
                size = BATCH if limit is None else min(BATCH, limit - done)
                cards = embeddings.without_vector(session, MODEL_ID, size)
                if not cards:
                    break
                found = embed_papers(cards, model)
                pairs = [(c.paper_id, vector_bytes(v)) for c, v in zip(cards, found, strict=True)]
                embeddings.save(session, pairs, MODEL_ID, datetime.now(UTC))
                done += len(cards)
    except Conflict:  # another process (a second worker) stored these meanwhile
        log.info("papers embedded by another process; %d embedded here", done)
    except Exception:  # the model or the database: logged, retried on the next call
        log.exception("embedding papers failed after %d; they will be embedded later", done)
    if done:
        log.info("embedded %d papers", done)
    return done


def vectors(store: Store, paper_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """paper id -> stored vector of the current model, for those that have one."""
    with store.transaction() as session:
        return embeddings.vectors(session, paper_ids, MODEL_ID, vector_from_bytes)


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
    before the extra was installed): the send path does that. Previews pass False and match
    only the papers that have one: they write nothing, and a page never waits for the model.
    """
    model = enabled(settings, embedder)
    if model is None:
        return None
    found: Mapping[int, np.ndarray] = vectors(store, [c.paper_id for c in cards])
    if embed_missing and len(found) < len(cards):
        embed_new(settings, store, model)
        found = vectors(store, [c.paper_id for c in cards])

    def stored_vectors(ids: Sequence[str]) -> dict[str, np.ndarray]:
        with store.transaction() as session:
            return embeddings.vectors_by_canonical_id(session, ids, MODEL_ID, vector_from_bytes)

    return SemanticMatch.from_settings(
        found, model.embed, settings.ranking, stored_vectors=stored_vectors
    )
