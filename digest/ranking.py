"""Rank the day's papers for every subscriber of a batch at once. Pure: no I/O, no database.

``Ranker(papers, settings, now)`` does the per-day work once (tokenise and stem titles and
abstracts, word counts, author keys, category sets, the trending/freshness prior);
``Ranker.rank(requests)`` then scores a whole batch of profiles with sparse matrix products
and returns one list of ``RankedItem`` per request, best first. ``rank_one`` ranks one.

Scoring, for one subscriber and one candidate paper::

    relevance = sum over the profile's include terms found in the paper:
                    term.weight * rarity * (title_weight * sat(tf_title)
                                            + abstract_weight * sat(tf_abstract))
              + author_boost   * (followed authors among the paper's authors, each counts)
              + category_boost * (1 if a chosen category or archive covers any of its categories)
    score     = relevance + trending_weight * log1p(upvotes)
                          + freshness_weight * 0.5 ** (age_hours / freshness_half_life_hours)

- ``sat`` is BM25's term-frequency saturation, ``tf * (k1 + 1) / (tf + k1 * norm)``: 1.0 for
  one occurrence at average length, at most ``k1 + 1`` however often. In the abstract
  ``norm = 1 - b + b * length / average_abstract_length``. Titles are not length-normalised
  (``norm = 1``): they are all short, and a word in a title is there on purpose.
- ``rarity`` stands in for BM25's idf. Plain idf is unbounded and grows with the size of the
  day, so a fixed floor would mean one thing on a 250-paper day and another on a 2,000-paper
  one. Here ``rarity = 0.5 + 0.5 / (1 + share / 0.1)``, where ``share`` is the part of the
  day's papers that contain the term (counted over ``papers + 50``, so on a tiny day a word is
  not "common" just because two of three papers use it): a rare term counts ~1, one in 10 % of
  the papers 0.75, one in every paper just over 0.5; never 0.5 or less.
- Words match by ``digest.analysis`` stems, the same definition the mail's highlighting uses:
  "transformers" finds "Transformer", "LLMs" finds "LLM". A phrase (``Term.is_phrase``)
  matches only as its contiguous stem sequence within one field; ``tf`` counts its
  (non-overlapping) occurrences.
- An exclude term (word or phrase, stemmed the same way) in the title or abstract vetoes the
  paper for that subscriber, whatever else matched, in the picks and the trending section.

The floor (``relevance_floor``, default 1.0) applies to ``relevance`` alone, before the prior:
upvotes and freshness re-order papers that passed it but never let one in, and a relevance of
0 never passes, even with a floor of 0. With the default weights (title 2, abstract 1):

- any title match of a term of weight 1 clears it (``2 * 1.0 * rarity > 1``);
- one mention in an abstract of average length or longer does not (``1.0 * rarity < 1``);
  at that length two mentions of a rarer term, several of a common one, or two terms do;
- a followed author (boost 3) clears it on their own; so does a chosen category (boost 1).

So a narrow profile gets a short list, not filler.

A profile with no topics (``not profile.has_topics``) gets the day's trending papers: by
upvotes (papers without an upvote count last), then the newest, then paper id, each with
``Reason("trending", "<upvotes>")``, or ``Reason("trending", "new")`` when nobody has upvoted
it: it is listed because it is new since the last digest, not because it trends.
``profile.also_trending`` adds, after the picks, up to ``settings.also_trending`` items with
``section="trending"``: the most upvoted candidates (upvotes > 0) not already picked.

Meaning beyond keywords (optional): given ``semantic=SemanticMatch(...)`` (``digest.semantic``:
the day's paper vectors and a way to embed profile texts), each profile is also matched by
meaning. Its texts (each include term, and the description in ``profile.extra``) are embedded
once per day; a paper's ``closeness`` is its best cosine over them. Then::

    score  += weight * clip((closeness - min_cosine) / (1 - min_cosine), 0, 1)
    passes  = relevance >= relevance_floor  or  closeness >= threshold

so closeness re-orders what the keywords found, and lets a paper in on meaning alone only
when it is high ("pruning" for a reader of "model compression"). A pick whose closeness
reaches the threshold carries ``Reason("semantic", <the closest profile text>)``, in order of
contribution among its other reasons. ``RankedItem.relevance`` stays the keyword part. A
profile with only a description has topics when semantic matching is on (trending otherwise).
Vectors are put on an integer grid (``_GRID``) so the cosines are exact sums, the same in any
batch. Without ``semantic`` (or when embedding fails) ranking is exactly keyword ranking.

What feedback taught (``profile.learned``, made by ``digest.feedback``) joins the same sums,
faded by ``Learned.decay(now)``: learned words (and the per-reader model's words) as more
term rows whose weights may be negative, each with ``Reason("learned", <word>)``; the
weights of one stem add up, and a stem among the profile's own include terms keeps the
reader's weight (the learned one is ignored). A negative weight lowers relevance, so it can
push a paper under the floor, and never lets one in; positive ones count like include terms.
Learned authors count their own (modest) weight instead of ``author_boost``; a followed
author keeps ``author_boost``. A liked paper is one more semantic text, matched by its stored
vector (``SemanticMatch.stored_vectors``) with its cosines lowered by its ``offset``.

Other rules: ties break by paper id, lower first; a paper whose ``first_seen_at`` is unknown is
never "new since" a ``since`` and gets no freshness; naive datetimes are taken as UTC; a paper
id given twice keeps its first card; a term given twice in one profile (same stems) counts
once, under its first spelling; a term weight that is not a positive number leaves the term
out (only a hand-made ``Profile`` can have one).

Speed: requests are ranked in chunks of rows (memory stays flat whatever the batch size), on
up to ``_MAX_THREADS`` threads; a term's paper vector is computed once per day and reasons
only for the chosen items.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import scipy.sparse as sp

from digest.config import RankingSettings
from digest.domain.analysis import author_key, stems, term_key
from digest.domain.categories import covers
from digest.domain.items import PaperCard, RankedItem, Reason
from digest.domain.profiles import Learned, Profile
from digest.semantic import ProfileText, SemanticMatch

_log = logging.getLogger(__name__)

MAX_LIMIT = 50
# Rarity: a term in this share of the day's papers counts 0.75 (halfway between 1 and 0.5).
_COMMON_SHARE = 0.1
# Pseudo-papers added to the day's count, so three papers that all say "model" do not make
# "model" look common.
_PSEUDO_PAPERS = 50
# Dense working arrays per chunk are (rows x papers); this many cells keeps each near 16 MB.
_CHUNK_CELLS = 2_000_000
_MIN_CHUNK_ROWS, _MAX_CHUNK_ROWS = 64, 4096
# Chunks run on this many threads: numpy and scipy release the GIL in the dense work, so one
# chunk's matrix work overlaps another's Python (rows, reasons, items). Each thread has its
# own workspace, so memory grows with this, not with the number of subscribers.
_MAX_THREADS = 4
_NEW = "new"  # the trending label of a paper nobody has upvoted yet
# Unit vectors scaled by 2**15 and rounded: a dot product is then a sum of integer products
# (each below 2**30, the sum below 2**53), exact in float64 whatever the summation order, so a
# cosine does not depend on the batch or the BLAS kernel; the rounding moves it by ~1e-5.
_GRID = 2.0**15
_UNGRID = 1.0 / (_GRID * _GRID)
_TEXT_BLOCK = 256  # profile texts whose cosines are computed at once (rows x papers floats)


@dataclass(frozen=True)
class RankRequest:
    profile: Profile
    limit: int  # most papers in the personal picks (1..50; clamped into that range)
    since: datetime | None = None  # only papers first seen at or after this; None = all
    exclude_ids: frozenset[int] = frozenset()  # paper ids already sent: never candidates

    def __post_init__(self) -> None:
        # Clamped, not refused: one subscriber's odd setting must not stop a whole batch.
        object.__setattr__(self, "limit", min(MAX_LIMIT, max(1, int(self.limit))))


@dataclass(frozen=True, slots=True)
class _TermVector:
    """One term's matches against every paper of the day, computed once per day."""

    columns: np.ndarray  # papers (column indexes) where the term occurs, ascending
    values: np.ndarray  # its unweighted relevance there: rarity * field-weighted saturation


@dataclass(slots=True)
class _Row:
    """One request turned into indexes: what its chunk's matrices are built from."""

    # (stems, term id, weight, reason); learned terms may weigh < 0
    terms: list[tuple[tuple[str, ...], int, float, Reason]]
    excludes: list[int]  # term ids
    authors: list[tuple[int, float]]  # (index into the day's author keys, weight)
    author_keys: dict[tuple[str, str], float]  # followed or learned author -> weight
    categories: list[int]  # indexes into the day's category tokens
    chosen_categories: tuple[str, ...]
    since: float  # POSIX seconds; -inf for "all"
    excluded_columns: list[int]
    limit: int  # 0 for a profile with no topics: its list comes from the trending order
    also_trending: bool
    semantic: list[tuple[int, Reason]]  # (profile text id, its reason), in profile order


class _Workspace:
    """Dense (rows x papers) arrays reused by every chunk of one ``rank`` call.

    Reusing them keeps memory flat and spares the page faults of fresh arrays per chunk.
    """

    def __init__(self, rows: int, papers: int) -> None:
        self.relevance = np.zeros((rows, papers))
        self.cost = np.empty((rows, papers))  # -score, +inf where failed
        self.blocked = np.empty((rows, papers), dtype=bool)  # not a candidate for this row
        self.failed = np.empty((rows, papers), dtype=bool)  # blocked or below the floor
        self._shape = (rows, papers)
        self._closeness: np.ndarray | None = None  # only when semantic matching is on

    @property
    def closeness(self) -> np.ndarray:
        """Best cosine of each row's profile texts to each paper (semantic matching only)."""
        if self._closeness is None:
            self._closeness = np.empty(self._shape)
        return self._closeness


def _timestamp(moment: datetime | None) -> float:
    if moment is None:
        return -math.inf
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class Ranker:
    """The day's papers prepared once, ready to rank any number of subscribers."""

    def __init__(
        self,
        papers: Sequence[PaperCard],
        settings: RankingSettings,
        now: datetime,
        *,
        semantic: SemanticMatch | None = None,
    ) -> None:
        """Per-day preparation, done ONCE for all subscribers: tokenise + stem titles and
        abstracts, word counts, author keys, category sets, the trending/freshness prior,
        and (with ``semantic``) the papers' vectors on the exact grid."""
        self.settings = settings
        self.now = now
        unique: dict[int, PaperCard] = {}
        for card in papers:
            unique.setdefault(card.paper_id, card)
        # Columns in paper-id order, so "lower column" is the deterministic tie-break.
        self._cards: list[PaperCard] = [unique[pid] for pid in sorted(unique)]
        self._n = len(self._cards)
        self._ids: list[int] = [card.paper_id for card in self._cards]
        self._column = {pid: col for col, pid in enumerate(self._ids)}
        self._id_set = frozenset(self._ids)

        self._prepare_text()
        self._prepare_authors_and_categories()
        self._prepare_prior()

        # Terms are registered lazily as profiles mention them, then kept for the day.
        self._term_id_by_text: dict[str, int | None] = {}
        self._term_id_by_key: dict[tuple[str, ...], int] = {}
        self._term_keys: list[tuple[str, ...]] = []
        self._term_vectors: list[_TermVector] = []
        self._registering = threading.Lock()  # chunks on several threads meet new terms
        self._includes: dict[tuple[str, str], tuple[tuple[str, ...], int, Reason] | None] = {}
        self._reasons: dict[tuple[str, str], Reason] = {}
        self._author_keys: dict[str, tuple[str, str]] = {}
        self._prepare_semantic(semantic)

    # -- per-day preparation ---------------------------------------------------------------

    def _prepare_text(self) -> None:
        vocabulary: dict[str, int] = {}
        title_counts: tuple[list[int], list[int], list[int]] = ([], [], [])
        abstract_counts: tuple[list[int], list[int], list[int]] = ([], [], [])
        abstract_lengths = np.zeros(self._n)
        # Each stem wrapped in its own spaces (" a  b ") so str.count finds a phrase only as
        # whole, contiguous stems, and counts adjacent occurrences.
        self._title_text: list[str] = []
        self._abstract_text: list[str] = []
        for col, card in enumerate(self._cards):
            for text, (rows, cols, counts), joined in (
                (card.title, title_counts, self._title_text),
                (card.abstract, abstract_counts, self._abstract_text),
            ):
                tokens = stems(text or "")
                if joined is self._abstract_text:
                    abstract_lengths[col] = len(tokens)
                joined.append(" " + "  ".join(tokens) + " " if tokens else "")
                for word, count in Counter(tokens).items():
                    rows.append(vocabulary.setdefault(word, len(vocabulary)))
                    cols.append(col)
                    counts.append(count)
        self._vocabulary = vocabulary
        shape = (len(vocabulary), self._n)
        rows, cols, counts = title_counts
        self._title_tf = sp.csr_matrix((counts, (rows, cols)), shape=shape, dtype=float)
        rows, cols, counts = abstract_counts
        self._abstract_tf = sp.csr_matrix((counts, (rows, cols)), shape=shape, dtype=float)
        self._present = (self._title_tf + self._abstract_tf).tocsr()
        self._present.sort_indices()

        # BM25's k1 * norm per paper. Titles are not length-normalised (see the docstring).
        k1, b = self.settings.bm25_k1, self.settings.bm25_b
        average = float(abstract_lengths.mean()) if self._n else 0.0
        ratio = abstract_lengths / average if average > 0 else np.ones(self._n)
        self._title_k = np.full(self._n, k1)
        self._abstract_k = k1 * (1.0 - b + b * ratio)

    def _prepare_authors_and_categories(self) -> None:
        author_index: dict[tuple[str, str], int] = {}
        self._author_names: list[dict[tuple[str, str], str]] = []  # key -> the paper's spelling
        rows: list[int] = []
        cols: list[int] = []
        for col, card in enumerate(self._cards):
            names: dict[tuple[str, str], str] = {}
            for name in card.authors:
                key = author_key(name)
                if key[0] and key not in names:
                    names[key] = name
                    rows.append(author_index.setdefault(key, len(author_index)))
                    cols.append(col)
            self._author_names.append(names)
        self._author_index = author_index
        self._paper_authors = sp.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(len(author_index), self._n)
        )

        # A paper carries its categories and their archives, so a chosen "cs" or "cs.LG"
        # meets it by plain equality: exactly what categories.covers means.
        token_index: dict[str, int] = {}
        rows, cols = [], []
        for col, card in enumerate(self._cards):
            tokens = set(card.categories) | {c.split(".")[0] for c in card.categories}
            for token in sorted(tokens):
                rows.append(token_index.setdefault(token, len(token_index)))
                cols.append(col)
        self._category_index = token_index
        self._paper_categories = sp.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(len(token_index), self._n)
        )

    def _prepare_prior(self) -> None:
        settings, cards = self.settings, self._cards
        self._seen = np.array([_timestamp(c.first_seen_at) for c in cards], dtype=float)
        age_hours = np.maximum(0.0, (_timestamp(self.now) - self._seen) / 3600.0)
        with np.errstate(invalid="ignore"):  # unknown first_seen_at: -inf, no freshness
            freshness = np.where(
                np.isfinite(self._seen),
                0.5 ** (age_hours / settings.freshness_half_life_hours),
                0.0,
            )
        upvotes = np.array([max(0, c.upvotes or 0) for c in cards], dtype=float)
        self._prior = settings.trending_weight * np.log1p(upvotes)
        self._prior += settings.freshness_weight * freshness
        self._negative_prior = -self._prior
        # Trending order: by upvotes (unknown last), then newest, then paper id.
        order = sorted(
            range(self._n),
            key=lambda col: (
                cards[col].upvotes is None,
                -(cards[col].upvotes or 0),
                -self._seen[col],
                col,
            ),
        )
        self._trend_order = np.array(order, dtype=np.int64)
        self._hot_order = [col for col in order if (cards[col].upvotes or 0) > 0]
        self._trend_reasons = [
            (Reason("trending", str(c.upvotes) if c.upvotes and c.upvotes > 0 else _NEW),)
            for c in cards
        ]

    def _prepare_semantic(self, semantic: SemanticMatch | None) -> None:
        self._semantic = semantic
        self._text_ids: dict[str, int] = {}  # profile text -> row of _text_grid
        self._text_grid = np.zeros((0, 0))
        self._text_offsets = np.zeros(0)  # per text: lowers its cosines (liked papers)
        self._embedding = threading.Lock()
        self._paper_grid = np.zeros((self._n, 0))
        if semantic is None:
            return
        vectors = {pid: semantic.paper_vectors.get(pid) for pid in self._ids}
        dimensions = {np.shape(v) for v in vectors.values() if v is not None}
        if len(dimensions) > 1 or any(len(d) != 1 for d in dimensions):
            raise ValueError(f"paper vectors of different shapes: {sorted(dimensions)}")
        if not dimensions:  # no paper has a vector: nothing to match by meaning
            self._semantic = None
            return
        width = dimensions.pop()[0]
        self._paper_grid = np.zeros((self._n, width))
        self._text_grid = np.zeros((0, width))
        for col, pid in enumerate(self._ids):
            if (vector := vectors[pid]) is not None:
                self._paper_grid[col] = _on_grid(vector)

    def _embed_profile_texts(self, requests: Sequence[RankRequest]) -> None:
        """Embed, in one call, the profile texts of ``requests`` not seen yet today."""
        semantic = self._semantic
        if semantic is None:
            return
        with self._embedding:
            new: dict[str, ProfileText] = {}
            for request in requests:
                for text in semantic.texts(request.profile):
                    if text.key not in self._text_ids:
                        new.setdefault(text.key, text)
            if not new:
                return
            try:
                vectors = self._profile_vectors(semantic, list(new.values()))
            except Exception as error:  # one failing model must not stop the digests
                _log.warning("semantic matching failed (%r); ranking on keywords alone", error)
                self._semantic = None
                return
            start = len(self._text_ids)
            grid = np.array([_on_grid(vector) for vector in vectors])
            # The grid first: a chunk on another thread may look a text up as soon as it has
            # an id.
            offsets = np.array([text.offset for text in new.values()], dtype=float)
            self._text_offsets = np.concatenate([self._text_offsets, offsets])
            self._text_grid = np.concatenate([self._text_grid, grid])
            self._text_ids.update((key, start + i) for i, key in enumerate(new))

    def _profile_vectors(self, semantic: SemanticMatch, texts: list[ProfileText]) -> np.ndarray:
        """One vector per text: a liked paper's stored vector when there is one (papers are
        embedded once, when stored), the model's embedding of the text otherwise."""
        width = self._text_grid.shape[1]
        vectors = np.zeros((len(texts), width))
        stored: Mapping[str, np.ndarray] = {}
        papers = [text.paper for text in texts if text.paper]
        if papers and semantic.stored_vectors is not None:
            stored = semantic.stored_vectors(papers)
        missing = []
        for i, text in enumerate(texts):
            found = stored.get(text.paper) if text.paper else None
            if found is not None and np.shape(found) == (width,):
                vectors[i] = found
            else:
                missing.append(i)
        if missing:
            embedded = np.asarray(semantic.embed([texts[i].text for i in missing]), dtype=float)
            if embedded.shape != (len(missing), width):
                raise ValueError(f"profile vectors of shape {embedded.shape}")
            vectors[missing] = embedded
        return vectors

    # -- terms -----------------------------------------------------------------------------

    def _term_id(self, text: str) -> int | None:
        """The registry id of a term, its paper vector computed on first sight; None if the
        term has no words."""
        if text in self._term_id_by_text:
            return self._term_id_by_text[text]
        with self._registering:
            if text in self._term_id_by_text:
                return self._term_id_by_text[text]
            key = term_key(text)
            term_id = self._term_id_by_key.get(key) if key else None
            if key and term_id is None:
                self._term_vectors.append(self._match(key))
                self._term_keys.append(key)
                term_id = self._term_id_by_key[key] = len(self._term_keys) - 1
            self._term_id_by_text[text] = term_id
            return term_id

    def _match(self, key: tuple[str, ...]) -> _TermVector:
        """Where a word or phrase occurs, and its unweighted relevance in each such paper."""
        present = self._present
        rows = [self._vocabulary.get(word) for word in key]
        postings = [
            present.indices[present.indptr[row] : present.indptr[row + 1]]
            for row in rows
            if row is not None
        ]
        if len(postings) < len(key):  # a stem no paper has
            return _TermVector(np.zeros(0, dtype=np.int64), np.zeros(0))
        if len(key) == 1:
            columns = postings[0].astype(np.int64)
            tf_title = self._title_tf[rows[0]].toarray().ravel()[columns]
            tf_abstract = self._abstract_tf[rows[0]].toarray().ravel()[columns]
        else:
            # Only papers holding every stem can hold the phrase; count it in each field.
            candidates = postings[0]
            for posting in postings[1:]:
                candidates = np.intersect1d(candidates, posting, assume_unique=True)
            needle = " " + "  ".join(key) + " "
            counts = [
                (col, self._title_text[col].count(needle), self._abstract_text[col].count(needle))
                for col in candidates.tolist()
            ]
            counts = [c for c in counts if c[1] or c[2]]
            columns = np.array([c[0] for c in counts], dtype=np.int64)
            tf_title = np.array([c[1] for c in counts], dtype=float)
            tf_abstract = np.array([c[2] for c in counts], dtype=float)
        settings = self.settings
        share = len(columns) / (self._n + _PSEUDO_PAPERS)
        rarity = 0.5 + 0.5 / (1.0 + share / _COMMON_SHARE)
        values = rarity * (
            settings.title_weight * _saturation(tf_title, self._title_k[columns], settings)
            + settings.abstract_weight
            * _saturation(tf_abstract, self._abstract_k[columns], settings)
        )
        return _TermVector(columns, values)

    def _term_matrix(self, term_ids: Sequence[int], presence: bool = False) -> sp.csr_matrix:
        """Stacked term vectors (relevance values, or 1 where present); sorted columns."""
        vectors = [self._term_vectors[tid] for tid in term_ids]
        indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
        np.cumsum([len(v.columns) for v in vectors], out=indptr[1:])
        if indptr[-1]:
            columns = np.concatenate([v.columns for v in vectors])
            values = (
                np.ones(len(columns)) if presence else np.concatenate([v.values for v in vectors])
            )
        else:
            columns, values = np.zeros(0, dtype=np.int64), np.zeros(0)
        return sp.csr_matrix((values, columns, indptr), shape=(len(vectors), self._n))

    def _reason(self, kind: str, label: str) -> Reason:
        # Shared Reason objects: 100,000 subscribers mostly repeat the same few thousand.
        found = self._reasons.get((kind, label))
        if found is None:
            found = self._reasons[(kind, label)] = Reason(kind, label)  # type: ignore[arg-type]
        return found

    def _author_key(self, name: str) -> tuple[str, str]:
        found = self._author_keys.get(name)
        if found is None:
            found = self._author_keys[name] = author_key(name)
        return found

    # -- ranking ---------------------------------------------------------------------------

    def rank(self, requests: Sequence[RankRequest]) -> list[list[RankedItem]]:
        """One list per request, in request order, best first."""
        if not requests:
            return []
        if self._n == 0:
            return [[] for _ in requests]
        self._embed_profile_texts(requests)
        size = min(_MAX_CHUNK_ROWS, max(_MIN_CHUNK_ROWS, _CHUNK_CELLS // self._n))
        chunks = [requests[start : start + size] for start in range(0, len(requests), size)]
        threads = min(len(chunks), _MAX_THREADS, _cpu_count())
        results: list[list[RankedItem]] = []
        with _gc_paused():
            if threads <= 1:
                work = _Workspace(min(size, len(requests)), self._n)
                for chunk in chunks:
                    results.extend(self._rank_chunk(chunk, work))
                return results
            local = threading.local()

            def run(chunk: Sequence[RankRequest]) -> list[list[RankedItem]]:
                if not hasattr(local, "work"):
                    local.work = _Workspace(size, self._n)
                return self._rank_chunk(chunk, local.work)

            with ThreadPoolExecutor(threads, thread_name_prefix="rank") as pool:
                for part in pool.map(run, chunks):
                    results.extend(part)
        return results

    def _include(
        self, text: str, learned: bool = False
    ) -> tuple[tuple[str, ...], int, Reason] | None:
        """(stems, term id, reason) of an include term as written (or a learned one, whose
        reason is kind "learned"); None if it has no words."""
        found = self._includes.get((text, "learned" if learned else ""), False)
        if found is False:
            tid = self._term_id(text)
            if tid is None:
                found = None
            else:
                key = self._term_keys[tid]
                kind = "learned" if learned else "phrase" if len(key) > 1 else "term"
                found = (key, tid, self._reason(kind, text))
            self._includes[(text, "learned" if learned else "")] = found
        return found  # type: ignore[return-value]

    def _learned_terms(
        self,
        learned: Learned,
        fade: float,
        terms: dict[int, tuple[tuple[str, ...], int, float, Reason]],
    ) -> None:
        """Add the learned (and model) terms to ``terms``: weights of one stem summed, faded
        with the feedback's age; a stem the reader chose explicitly keeps its own weight."""
        summed: dict[int, tuple[tuple[str, ...], float, Reason]] = {}
        for term in (*learned.terms, *learned.model):
            found = self._include(term.text, learned=True)
            weight = float(term.weight) * fade
            if found is None or found[1] in terms or not math.isfinite(weight):
                continue
            key, tid, reason = found
            _key, before, first = summed.get(tid, (key, 0.0, reason))
            summed[tid] = (key, before + weight, first)
        for tid, (key, weight, reason) in summed.items():
            if weight:
                terms[tid] = (key, tid, weight, reason)

    def _row(self, request: RankRequest) -> _Row:
        profile = request.profile
        terms: dict[int, tuple[tuple[str, ...], int, float, Reason]] = {}
        for term in profile.include:
            found = self._include(term.text)
            weight = float(term.weight)
            # First spelling wins (as in profiles.parse_terms); a weight that is not a positive
            # number (only a hand-made Profile can have one) leaves the term out.
            if found is not None and found[1] not in terms and 0 < weight < math.inf:
                key, tid, reason = found
                terms[tid] = (key, tid, weight, reason)
        learned = profile.learned
        fade = learned.decay(self.now)
        if learned.terms or learned.model:
            self._learned_terms(learned, fade, terms)
        excludes: set[int] = set()
        for text in profile.exclude:
            if (tid := self._term_id(text)) is not None:
                excludes.add(tid)
        # Followed authors count author_boost; learned ones their own, smaller, faded weight.
        author_keys: dict[tuple[str, str], float] = {}
        for name in profile.authors:
            author_keys[self._author_key(name)] = self.settings.author_boost
        for author in learned.authors:
            weight = float(author.weight) * fade
            if 0 < weight < math.inf:
                author_keys.setdefault(self._author_key(author.name), weight)
        authors = sorted(
            (i, weight)
            for key, weight in author_keys.items()
            if (i := self._author_index.get(key)) is not None
        )
        categories = {
            i
            for chosen in profile.categories
            if (i := self._category_index.get(chosen)) is not None
        }
        sent = request.exclude_ids & self._id_set if request.exclude_ids else ()
        semantic: list[tuple[int, Reason]] = []
        if self._semantic is not None:
            for text in self._semantic.texts(profile):
                if (text_id := self._text_ids.get(text.key)) is not None:
                    semantic.append((text_id, self._reason("semantic", text.label)))
        return _Row(
            terms=sorted(terms.values()),  # stem order: the same sum order in any batch
            excludes=sorted(excludes),
            authors=sorted(authors),
            author_keys=author_keys,
            categories=sorted(categories),
            chosen_categories=profile.categories,
            since=_timestamp(request.since),
            excluded_columns=[self._column[pid] for pid in sent],
            limit=request.limit if profile.has_topics or semantic else 0,
            also_trending=profile.also_trending,
            semantic=semantic,
        )

    def _rank_chunk(
        self, requests: Sequence[RankRequest], work: _Workspace
    ) -> list[list[RankedItem]]:
        rows = [self._row(request) for request in requests]
        m, n = len(rows), self._n
        settings = self.settings

        # Relevance: subscriber x term weights times term x paper values. Local term ids
        # follow stem order, so a row sums its terms in the same order whatever else is in
        # the batch: batch and one-at-a-time ranking give bit-identical scores.
        include_ids = sorted(
            {tid for row in rows for _key, tid, _w, _r in row.terms},
            key=self._term_keys.__getitem__,
        )
        local = {tid: i for i, tid in enumerate(include_ids)}
        indptr = [0]
        indices: list[int] = []
        weights: list[float] = []
        for row in rows:
            for _key, tid, weight, _reason in row.terms:
                indices.append(local[tid])
                weights.append(weight)
            indptr.append(len(indices))
        wanted = sp.csr_matrix((weights, indices, indptr), shape=(m, len(include_ids)))
        terms_by_paper = self._term_matrix(include_ids)
        relevance = work.relevance[:m]
        if wanted.nnz:
            (wanted @ terms_by_paper).toarray(out=relevance)
        else:
            relevance.fill(0.0)
        if any(row.authors for row in rows):
            hits = (
                _weighted_selection([row.authors for row in rows], len(self._author_index))
                @ self._paper_authors
            ).tocoo()
            relevance[hits.row, hits.col] += hits.data  # each author's weight, summed
        if any(row.categories for row in rows):
            hits = (
                _selection([row.categories for row in rows], len(self._category_index))
                @ self._paper_categories
            ).tocoo()
            relevance[hits.row, hits.col] += settings.category_boost  # once, however many

        # Blocked: seen before the row's `since`, already sent, or vetoed by an exclude term.
        blocked = work.blocked[:m]
        since = np.array([row.since for row in rows])
        np.less(self._seen[None, :], since[:, None], out=blocked)
        for i, row in enumerate(rows):
            if row.excluded_columns:
                blocked[i, row.excluded_columns] = True
        if any(row.excludes for row in rows):
            exclude_ids = sorted({tid for row in rows for tid in row.excludes})
            local = {tid: i for i, tid in enumerate(exclude_ids)}
            vetoes = _selection(
                [[local[tid] for tid in row.excludes] for row in rows], len(exclude_ids)
            )
            hits = (vetoes @ self._term_matrix(exclude_ids, presence=True)).tocoo()
            blocked[hits.row, hits.col] = True

        # The floor applies to relevance alone; the prior only re-orders what passed it.
        failed = work.failed[:m]
        if settings.relevance_floor > 0:
            np.less(relevance, settings.relevance_floor, out=failed)
        else:
            np.less_equal(relevance, 0.0, out=failed)
        closeness = None
        semantic = self._semantic  # read once: a failed embedding may turn it off meanwhile
        if semantic is not None and any(row.semantic for row in rows):
            closeness = work.closeness[:m]
            self._closeness(rows, closeness)
            # Meaning lets a paper past the floor only when it is close: see the docstring.
            np.logical_and(failed, closeness < semantic.threshold, out=failed)
        np.logical_or(failed, blocked, out=failed)
        # Costs (negated scores) rather than scores: argpartition is far faster picking the
        # smallest k of a row full of +inf than the largest k of one full of -inf.
        cost = work.cost[:m]
        np.subtract(self._negative_prior[None, :], relevance, out=cost)  # -(prior + relevance)
        if closeness is not None and semantic is not None:
            cost -= _semantic_bonus(closeness, semantic)
        np.copyto(cost, np.inf, where=failed)

        limits = np.array([row.limit for row in rows])
        k = min(int(limits.max()), n)
        top, top_cost = _smallest_k(cost, k)
        take = np.isfinite(top_cost) & (np.arange(k)[None, :] < limits[:, None])
        pick_rows, pick_ranks = np.nonzero(take)
        pick_cols = top[pick_rows, pick_ranks]
        items = self._picked_items(
            rows,
            wanted,
            terms_by_paper,
            pick_rows,
            pick_cols,
            -top_cost[pick_rows, pick_ranks],
            relevance[pick_rows, pick_cols],
            (closeness, semantic) if closeness is not None and semantic is not None else None,
        )
        bounds = np.concatenate(([0], np.cumsum(take.sum(axis=1)))).tolist()
        results = [items[bounds[i] : bounds[i + 1]] for i in range(m)]

        for i, row in enumerate(rows):
            if not row.limit:
                results[i] = self._trending(blocked[i], requests[i].limit, relevance[i])
            elif row.also_trending and settings.also_trending:
                results[i].extend(self._also_trending(blocked[i], results[i], relevance[i]))
        return results

    def _picked_items(
        self,
        rows: Sequence[_Row],
        wanted: sp.csr_matrix,
        terms_by_paper: sp.csr_matrix,
        pick_rows: np.ndarray,
        pick_cols: np.ndarray,
        pick_scores: np.ndarray,
        pick_relevance: np.ndarray,
        closeness: tuple[np.ndarray, SemanticMatch] | None = None,
    ) -> list[RankedItem]:
        """RankedItems for the chosen (row, paper) pairs, with reasons and highlight terms.

        Only the chosen pairs are looked at, all at once: each pair's terms are expanded, their
        values read from the term x paper matrix, the non-matches dropped, the rest sorted by
        pair, then contribution (largest first), then stem order.
        """
        pairs = len(pick_rows)
        starts = wanted.indptr[pick_rows]
        counts = wanted.indptr[pick_rows + 1] - starts
        pair = np.repeat(np.arange(pairs), counts)
        entry = np.arange(int(counts.sum())) + np.repeat(
            starts - (np.cumsum(counts) - counts), counts
        )
        contribution = wanted.data[entry] * _lookup(
            terms_by_paper, wanted.indices[entry], pick_cols[pair]
        )
        keep = contribution > 0
        pair, entry, contribution = pair[keep], entry[keep], contribution[keep]
        order = np.lexsort((entry, -contribution, pair))
        pair, entry, contribution = pair[order], entry[order], contribution[order]
        bounds = np.searchsorted(pair, np.arange(pairs + 1)).tolist()

        # Reasons in the same entry order as ``wanted``'s data, then picked per pair.
        row_reasons = [reason for row in rows for _key, _tid, _w, reason in row.terms]
        reasons = [row_reasons[e] for e in entry.tolist()]
        labels = [reason.label for reason in reasons]
        values = contribution.tolist()
        ids = self._ids
        merge = [bool(row.authors or row.categories) for row in rows]
        semantic = (
            self._semantic_reasons(rows, pick_rows, pick_cols, closeness) if closeness else {}
        )
        items: list[RankedItem] = []
        append = items.append
        for pair, (i, col, score, relevance, a, b) in enumerate(
            zip(
                pick_rows.tolist(),
                pick_cols.tolist(),
                pick_scores.tolist(),
                pick_relevance.tolist(),
                bounds[:-1],
                bounds[1:],
                strict=True,
            )
        ):
            close = semantic.get(pair)
            if merge[i] or close:
                chosen = self._with_people_and_places(
                    rows[i], col, values[a:b], reasons[a:b], close
                )
            else:
                chosen = tuple(reasons[a:b])
            append(RankedItem(ids[col], score, relevance, chosen, "picks", tuple(labels[a:b])))
        return items

    def _with_people_and_places(
        self,
        row: _Row,
        col: int,
        values: list[float],
        term_reasons: list[Reason],
        close: tuple[float, Reason] | None = None,
    ) -> tuple[Reason, ...]:
        """Term, author, category and semantic reasons together by contribution (terms first
        on ties)."""
        scored = list(zip(values, term_reasons, strict=True))
        if row.author_keys:
            for key, name in self._author_names[col].items():
                if key in row.author_keys:
                    scored.append((row.author_keys[key], self._reason("author", name)))
        if row.chosen_categories:
            scored.extend(self._category_reason(row.chosen_categories, col))
        if close is not None:
            scored.append(close)
        scored.sort(key=_first, reverse=True)  # stable: equal contributions keep their order
        return tuple(reason for _value, reason in scored)

    def _closeness(self, rows: Sequence[_Row], out: np.ndarray) -> None:
        """Each row's best cosine over its profile texts, per paper (-1 for rows without)."""
        out.fill(-1.0)
        wanted: dict[int, list[int]] = {}  # text id -> rows that have it
        for i, row in enumerate(rows):
            for text_id, _reason in row.semantic:
                wanted.setdefault(text_id, []).append(i)
        text_ids = sorted(wanted)
        for start in range(0, len(text_ids), _TEXT_BLOCK):
            block = text_ids[start : start + _TEXT_BLOCK]
            cosines = self._text_grid[block] @ self._paper_grid.T
            cosines *= _UNGRID
            cosines -= self._text_offsets[block][:, None]
            for k, text_id in enumerate(block):
                for i in wanted[text_id]:
                    np.maximum(out[i], cosines[k], out=out[i])

    def _semantic_reasons(
        self,
        rows: Sequence[_Row],
        pick_rows: np.ndarray,
        pick_cols: np.ndarray,
        close_to: tuple[np.ndarray, SemanticMatch],
    ) -> dict[int, tuple[float, Reason]]:
        """For picks close enough to their profile: pick index -> (bonus, closest text)."""
        closeness, semantic = close_to
        close = np.flatnonzero(closeness[pick_rows, pick_cols] >= semantic.threshold)
        if not len(close):
            return {}
        bonus = _semantic_bonus(closeness[pick_rows[close], pick_cols[close]], semantic)
        found: dict[int, tuple[float, Reason]] = {}
        for pair, value in zip(close.tolist(), bonus.tolist(), strict=True):
            row, col = rows[int(pick_rows[pair])], int(pick_cols[pair])
            ids = [text_id for text_id, _reason in row.semantic]
            cosines = (self._text_grid[ids] @ self._paper_grid[col]) * _UNGRID
            best = int(np.argmax(cosines - self._text_offsets[ids]))  # first on ties
            found[pair] = (value, row.semantic[best][1])
        return found

    def _category_reason(self, chosen: Sequence[str], col: int) -> list[tuple[float, Reason]]:
        # One boost per paper however many of its categories are covered; name the first
        # (the primary category when it is covered).
        for category in self._cards[col].categories:
            for wanted in chosen:
                if covers(wanted, category):
                    return [(self.settings.category_boost, self._reason("category", category))]
        return []

    def _trending(self, blocked: np.ndarray, limit: int, relevance: np.ndarray) -> list[RankedItem]:
        """A profile with no topics: the day's top trending candidates."""
        order = self._trend_order
        columns = order[~blocked[order]][:limit].tolist()
        return [self._trending_item(col, relevance, "picks") for col in columns]

    def _also_trending(
        self, blocked: np.ndarray, picks: list[RankedItem], relevance: np.ndarray
    ) -> list[RankedItem]:
        """Up to ``also_trending`` upvoted candidates that are not among the picks."""
        picked = {item.paper_id for item in picks}
        items: list[RankedItem] = []
        for col in self._hot_order:
            if len(items) == self.settings.also_trending:
                break
            if not blocked[col] and self._ids[col] not in picked:
                items.append(self._trending_item(col, relevance, "trending"))
        return items

    def _trending_item(self, col: int, relevance: np.ndarray, section: str) -> RankedItem:
        return RankedItem(
            self._ids[col],
            float(self._prior[col]),
            float(relevance[col]),
            self._trend_reasons[col],
            section,  # type: ignore[arg-type]
        )


def _semantic_bonus(closeness: np.ndarray, semantic: SemanticMatch) -> np.ndarray:
    """weight * clip((closeness - min_cosine) / (1 - min_cosine), 0, 1), elementwise."""
    scaled = (closeness - semantic.min_cosine) / (1.0 - semantic.min_cosine)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    scaled *= semantic.weight
    return scaled


def _on_grid(vector: np.ndarray) -> np.ndarray:
    """A vector scaled to unit length and rounded onto the integer grid (see ``_GRID``)."""
    vector = np.asarray(vector, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(vector))
    if not norm or not math.isfinite(norm):
        return np.zeros_like(vector)
    return np.rint(vector * (_GRID / norm))


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch runs.

    A batch allocates millions of small tracked objects (items, reason tuples) that all stay
    alive; the collector would re-scan the growing heap again and again for nothing (it made
    100,000 subscribers take 1.7x as long). Restored afterwards; nothing here forms cycles.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _first(pair: tuple[float, Reason]) -> float:
    return pair[0]


def _saturation(tf: np.ndarray, k: np.ndarray, settings: RankingSettings) -> np.ndarray:
    """BM25's term-frequency part, 1.0 for one occurrence where ``k == k1``; 0 where tf is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tf > 0, tf * (settings.bm25_k1 + 1) / (tf + k), 0.0)


def _selection(chosen: Sequence[Sequence[int]], width: int) -> sp.csr_matrix:
    """A 0/1 matrix with a row per subscriber and a 1 at each chosen index."""
    indptr = np.zeros(len(chosen) + 1, dtype=np.int64)
    np.cumsum([len(c) for c in chosen], out=indptr[1:])
    indices = [index for c in chosen for index in c]
    return sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(chosen), width))


def _weighted_selection(chosen: Sequence[Sequence[tuple[int, float]]], width: int) -> sp.csr_matrix:
    """A matrix with a row per subscriber holding each chosen index's weight."""
    indptr = np.zeros(len(chosen) + 1, dtype=np.int64)
    np.cumsum([len(c) for c in chosen], out=indptr[1:])
    indices = [index for c in chosen for index, _weight in c]
    weights = [weight for c in chosen for _index, weight in c]
    return sp.csr_matrix((weights, indices, indptr), shape=(len(chosen), width))


def _lookup(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """matrix[rows[i], cols[i]] for each i, 0 where absent (needs sorted indices per row)."""
    n = matrix.shape[1]
    keys = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    keys = keys * n + matrix.indices
    wanted = rows.astype(np.int64) * n + cols
    at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    if not len(keys):
        return np.zeros(len(wanted))
    return np.where(keys[at] == wanted, matrix.data[at], 0.0)


def _smallest_k(cost: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k columns of least cost (ties: lower column first), and their costs.

    argpartition finds them in linear time but breaks ties at the boundary arbitrarily; a row
    where a tie straddles the boundary is redone with a full, exact sort.
    """
    m, n = cost.shape
    if k <= 0:
        return np.zeros((m, 0), dtype=np.int64), np.zeros((m, 0))
    if k < n:
        part = np.argpartition(cost, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (m, n)).copy()
    values = np.take_along_axis(cost, part, axis=1)
    order = np.lexsort((part, values), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    top_cost = np.take_along_axis(values, order, axis=1)
    if k < n:
        worst = top_cost[:, -1]
        inside = np.count_nonzero(top_cost == worst[:, None], axis=1)
        everywhere = np.count_nonzero(cost == worst[:, None], axis=1)
        for i in np.flatnonzero(np.isfinite(worst) & (everywhere > inside)):
            exact = np.lexsort((np.arange(n), cost[i]))[:k]
            top[i], top_cost[i] = exact, cost[i, exact]
    return top, top_cost


def rank_one(
    papers: Sequence[PaperCard], settings: RankingSettings, now: datetime, request: RankRequest
) -> list[RankedItem]:
    """Rank one subscriber (tests, ``--user`` debugging); the batch path is the same code."""
    return Ranker(papers, settings, now).rank([request])[0]
