"""The labelled ranking benchmark: its judgements are complete and sane, its metrics are right,
and the product's keyword ranking beats a plain word count on it (benchmarks/ranking)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from digest.domain.profiles import build_profile

ROOT = Path(__file__).parents[2]
BENCH = ROOT / "benchmarks" / "ranking"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ranking_evaluate", BENCH / "evaluate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


E = _load()
CARDS = E.load_corpus()
PROFILES = E.load_judgements()
RAW = [json.loads(line) for line in E.JUDGEMENTS.read_text(encoding="utf-8").splitlines()]

# -- the judgement file -----------------------------------------------------------------------


def test_corpus_is_the_sample_listing() -> None:
    assert len(CARDS) == 251
    assert [card.paper_id for card in CARDS] == list(range(251))


def test_every_line_has_the_fields_and_ids_are_unique() -> None:
    fields = {"id", "kind", "include", "exclude", "description", "intent", "guideline", "grades"}
    assert len(RAW) == len(PROFILES) >= 12
    for row in RAW:
        assert set(row) == fields, row.get("id")
        assert row["guideline"].strip() and row["intent"].strip(), row["id"]
        assert isinstance(row["grades"], dict)
    assert len({row["id"] for row in RAW}) == len(RAW)


@pytest.mark.parametrize("judged", PROFILES, ids=lambda j: j.id)
def test_grades_are_for_real_papers_and_in_range(judged: object) -> None:
    grades = judged.grades  # type: ignore[attr-defined]
    assert grades, "a profile with no relevant paper measures nothing"
    assert all(0 <= index < len(CARDS) for index in grades)
    # Unlisted papers are 0, so the file lists only 1-3; a 0 listed would hide a typo.
    assert set(grades.values()) <= {1, 2, 3}


@pytest.mark.parametrize("judged", PROFILES, ids=lambda j: j.id)
def test_each_profile_has_enough_relevant_papers(judged: object) -> None:
    grades = list(judged.grades.values())  # type: ignore[attr-defined]
    assert sum(1 for g in grades if g >= E.RELEVANT) >= 5, "P@5 needs five relevant papers"
    assert 3 in grades


@pytest.mark.parametrize("judged", PROFILES, ids=lambda j: j.id)
def test_profiles_parse_like_a_readers_input(judged: object) -> None:
    profile = judged.profile  # type: ignore[attr-defined]
    again = build_profile(include=judged.include, exclude=judged.exclude)  # type: ignore[attr-defined]
    assert profile.include == again.include and profile.exclude == again.exclude
    assert profile.include or profile.extra.get("description")


def test_the_set_covers_the_kinds_of_reader_it_promises() -> None:
    kinds = [set(j.kind) for j in PROFILES]
    assert sum("synonyms" in k for k in kinds) >= 3
    assert sum("exclude" in k for k in kinds) >= 2
    assert sum("phrase" in k for k in kinds) >= 2
    assert sum("short keywords" in k for k in kinds) >= 3
    described = [j for j in PROFILES if "described" in j.kind]
    assert len(described) >= 2
    assert all(j.description and len(j.description.split()) >= 8 for j in described)
    assert any(not j.include for j in described), "one reader gives only a description"
    for j in PROFILES:
        if "exclude" in j.kind:
            assert j.exclude
        if "weights" in j.kind:
            assert any(t.weight != 1.0 for t in j.profile.include)


# -- the metrics, on hand-made examples ------------------------------------------------------


def _judged(grades: dict[int, int]) -> object:
    return E.Judged("t", (), ("x",), (), None, "", "", grades)


def test_ndcg_of_the_ideal_order_is_one_and_of_nothing_is_zero() -> None:
    judged = _judged({1: 3, 2: 2, 3: 1})
    assert E.ndcg_at([1, 2, 3], judged) == pytest.approx(1.0)
    assert E.ndcg_at([], judged) == 0.0
    assert E.ndcg_at([7, 8, 9], judged) == 0.0


def test_ndcg_by_hand() -> None:
    judged = _judged({1: 3, 2: 1})
    # Ranked [9, 2, 1]: gains 0, 1, 7 at ranks 1, 2, 3; ideal 7, 1.
    dcg = 1 / math.log2(3) + 7 / math.log2(4)
    ideal = 7 / math.log2(2) + 1 / math.log2(3)
    assert E.ndcg_at([9, 2, 1], judged) == pytest.approx(dcg / ideal)
    # Only the top k count: the grade-3 paper at rank 3 is outside a cut-off of 2.
    assert E.ndcg_at([9, 2, 1], judged, k=2) == pytest.approx((1 / math.log2(3)) / ideal)


def test_ideal_dcg_uses_every_judged_paper_not_only_those_ranked() -> None:
    judged = _judged({i: 3 for i in range(12)})  # 12 perfect papers; ten fit in the top 10
    assert E.ndcg_at(list(range(10)), judged) == pytest.approx(1.0)
    assert E.ndcg_at(list(range(5)), judged) < 1.0


def test_precision_counts_grade_two_and_up_and_a_short_list_is_not_excused() -> None:
    judged = _judged({1: 3, 2: 2, 3: 1})
    assert E.precision_at([1, 2, 3, 4, 5], judged) == pytest.approx(2 / 5)
    assert E.precision_at([1], judged) == pytest.approx(1 / 5)
    assert E.precision_at([], judged) == 0.0


def test_recall_is_over_all_relevant_papers() -> None:
    judged = _judged({1: 3, 2: 2, 3: 2, 4: 1})
    assert E.recall_at([4, 1, 9], judged) == pytest.approx(1 / 3)
    assert E.recall_at([3, 2, 1], judged) == pytest.approx(1.0)
    assert E.recall_at([*range(100, 120), 1], judged) == 0.0  # rank 21 is outside


def test_baseline_counts_raw_words_without_stems_or_phrases() -> None:
    cards = [
        E.PaperCard(0, "a", None, "Transformers", "transformers transformers"),
        E.PaperCard(1, "b", None, "A transformer", "transformer graph"),
        E.PaperCard(2, "c", None, "Graph networks", "graph"),
        E.PaperCard(3, "d", None, "Nothing here", ""),
    ]
    judged = E.Judged("t", (), ("graph transformer",), (), None, "", "", {})
    (ranked,) = E.baseline(cards)([judged])
    # "transformers" is not "transformer" (no stemming); the phrase is two loose words.
    assert ranked == [1, 2]


# -- the real data ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def measured() -> dict[str, dict[str, dict[str, float]]]:
    return {
        "baseline": E.evaluate(PROFILES, E.baseline(CARDS)),
        "keywords": E.evaluate(PROFILES, E.keywords(CARDS)),
    }


def test_keyword_ranking_beats_the_word_count_baseline_on_mean_ndcg(
    measured: dict[str, dict[str, dict[str, float]]],
) -> None:
    ids = [j.id for j in PROFILES]
    baseline = E.mean(measured["baseline"], ids)["ndcg@10"]
    keywords = E.mean(measured["keywords"], ids)["ndcg@10"]
    assert keywords > baseline, f"keywords {keywords:.4f} vs baseline {baseline:.4f}"


def test_on_words_the_papers_use_keyword_ranking_wins_clearly(
    measured: dict[str, dict[str, dict[str, float]]],
) -> None:
    literal = [j.id for j in PROFILES if not {"synonyms", "described"} & set(j.kind)]
    assert len(literal) >= 5
    baseline = E.mean(measured["baseline"], literal)["ndcg@10"]
    keywords = E.mean(measured["keywords"], literal)["ndcg@10"]
    assert keywords >= baseline + 0.05


def test_the_evaluation_is_deterministic() -> None:
    first = E.evaluate(PROFILES, E.keywords(CARDS))
    again = E.evaluate(PROFILES, E.keywords(CARDS))
    assert first == again


def test_simulated_feedback_improves_the_second_digest() -> None:
    """(d) against (d0) on keywords alone: liking the first digest's relevant papers must
    lift the second digest, and never make a reader who gave no feedback worse off."""
    first = [ranked[: E.FIRST_DIGEST] for ranked in E.keywords(CARDS)(PROFILES)]
    plain = E.second_digest(CARDS, PROFILES, first)
    learned = E.second_digest(CARDS, PROFILES, first, feedback=E.FeedbackSettings())
    ids = [j.id for j in PROFILES]
    before = E.scores(plain.judged, plain.results)
    after = E.scores(learned.judged, learned.results)
    assert E.mean(after, ids)["ndcg@10"] >= E.mean(before, ids)["ndcg@10"] + 0.05
    for judged, sent in zip(PROFILES, first, strict=True):
        # The first digest is gone from the second, and from what it is scored on.
        assert not set(sent) & set(learned.judged[PROFILES.index(judged)].grades)
        if not any(judged.grade(i) >= E.RELEVANT for i in sent):
            assert after[judged.id] == before[judged.id]
