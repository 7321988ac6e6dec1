"""The collector paused while a batch is ranked (digest/ranking/parts.py ``gc_paused``): put
back after, and, where the caller keeps the results, those counted as old rather than scanned
when collection resumes; cycles made meanwhile still collected by a full collection."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from digest.config import RankingSettings
from digest.domain.items import PaperCard
from digest.domain.profiles import build_profile
from digest.ranking import Ranker, RankRequest
from digest.ranking.parts import gc_paused

NOW = datetime(2026, 9, 25, 12, 0, tzinfo=UTC)


class _Node:
    other: object = None


def _generation_of(thing: object) -> int | None:
    for generation in (2, 1, 0):
        if any(found is thing for found in gc.get_objects(generation)):
            return generation
    return None


@pytest.fixture
def collecting() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    gc.collect()  # young generations empty to start from
    yield
    (gc.enable if was else gc.disable)()


def test_results_kept_are_old_at_once_and_collection_resumes(collecting: None) -> None:
    with gc_paused(results_kept=True):
        assert not gc.isenabled()
        kept = [[n] for n in range(20_000)]
        young = gc.get_count()[0]
    assert gc.isenabled()
    assert young >= 20_000  # all of it would have been one young pass
    assert gc.get_count()[0] < young
    assert _generation_of(kept) == 2 and _generation_of(kept[-1]) == 2


def test_cycles_made_meanwhile_are_still_collected(collecting: None) -> None:
    with gc_paused(results_kept=True):
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
    assert gone() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()
    assert gone() is None


def test_left_alone_where_something_else_froze_objects(collecting: None) -> None:
    frozen = [object() for _ in range(10)]  # noqa: F841  (held while frozen)
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        with gc_paused(results_kept=True):
            kept = [[n] for n in range(100)]
        # Nothing of theirs thawed, nothing of ours frozen.
        assert gc.get_freeze_count() == before
        assert _generation_of(kept) in (0, 1)
    finally:
        gc.unfreeze()


def test_a_paused_block_inside_another_leaves_collection_off(collecting: None) -> None:
    gc.disable()
    with gc_paused(results_kept=True):
        pass
    assert not gc.isenabled()


def test_ranking_leaves_its_picks_old_and_collection_on(collecting: None) -> None:
    titles = ["Pruning neural networks", "Model compression by distillation", "Bird songs"]
    papers = [
        PaperCard(
            paper_id=n + 1,
            canonical_id=f"test/{n + 1}",
            arxiv_id=None,
            title=title,
            abstract=title,
            first_seen_at=NOW - timedelta(hours=1),
        )
        for n, title in enumerate(titles)
    ]
    ranker = Ranker(papers, RankingSettings(semantic=False), NOW)
    request = RankRequest(build_profile(include=["neural network", "compression"]), 10)
    [items] = ranker.rank([request])
    assert items
    assert gc.isenabled()
    assert _generation_of(items[0]) == 2
