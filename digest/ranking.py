"""Rank the day's papers for every subscriber of a batch at once. Pure: no I/O, no database.

``Ranker(papers, settings, now)`` does the per-day work once (tokenise and stem titles and
abstracts, count words, author keys, category sets, the trending/freshness prior);
``Ranker.rank(requests)`` then scores a whole batch of profiles with sparse matrix products
and returns one list of ``RankedItem`` per request, best first.

Scoring, for one subscriber and one candidate paper::

    relevance = sum over matched include terms  t.weight * rarity(t) * (
                    title_weight * sat(tf_title) + abstract_weight * sat(tf_abstract, length))
              + author_boost   * (number of followed authors among the paper's authors)
              + category_boost * (1 if a chosen category or archive covers one of the paper's)
    score     = relevance + trending_weight * log1p(upvotes)
                          + freshness_weight * 0.5 ** (age_hours / freshness_half_life_hours)

- ``sat`` is BM25's term-frequency saturation, scaled so one occurrence at the field's average
  length is 1.0: ``tf * (k1 + 1) / (tf + k1 * norm)``. In the abstract
  ``norm = 1 - b + b * length / average_length``; titles are not length-normalised (``norm =
  1``): they are all short, and a word in a title is there on purpose, not from verbosity.
- ``rarity`` stands in for BM25's idf. Plain idf grows without bound and with the size of the
  corpus, so a fixed floor would mean one thing on a 250-paper day and another on a
  2,000-paper day. Here ``rarity = 0.5 + 0.5 / (1 + f / 0.1)`` where ``f`` is the share of the
  day's papers that contain the term (smoothed with 50 pseudo-papers, so a tiny corpus does
  not make every word look common): a rare term counts ~1, a term in 10 % of the papers 0.75,
  a term in every paper just over 0.5. It never drops below 0.5.
- Words match by ``digest.analysis`` stems (the same definition the mail's highlighting uses),
  so "transformers" finds "Transformer" and "LLMs" finds "LLM". A phrase matches only as the
  contiguous stem sequence inside one field; its ``tf`` is the number of (non-overlapping)
  occurrences.
- Any exclude term (word or phrase, stemmed the same way) found in the title or abstract
  vetoes the paper for that subscriber, whatever else matched.

The relevance floor (``relevance_floor``, default 1.0) is applied to ``relevance`` only, before
the prior, so upvotes and freshness re-order relevant papers but never let an irrelevant one
in; a relevance of 0 never passes, even with a floor of 0. With the default weights (title 2,
abstract 1) the floor means:

- any title match of an include term (weight 1) clears it: ``2 * 1.0 * rarity >= 1``;
- an abstract alone clears it only with more than a passing mention: a single mention in an
  abstract of average length scores ``rarity < 1`` and does not; two mentions of a rarer term,
  several of a common one, or mentions of two different terms do;
- a followed author (boost 3) clears it on their own; so does a chosen category (boost 1).

A narrow profile therefore gets a short list instead of filler.

Profiles with no topics (``not profile.has_topics``) get the day's trending papers: by upvotes
(papers without upvote counts last), then the newest, then paper id, each with
``Reason("trending", "<upvotes>")``, or ``Reason("trending", "new")`` for a paper nobody has
upvoted (it is in the list because it is new since the last digest, not because it trends).
``profile.also_trending`` adds up to ``settings.also_trending`` items (``section="trending"``)
after the picks: the most upvoted candidates (upvotes > 0) not picked and not vetoed.

Other rules: ties break by paper id (lower first); a paper whose ``first_seen_at`` is unknown is
never "new since" a given ``since`` and gets no freshness; naive datetimes are taken as UTC; a
paper id given twice keeps its first card; a term given twice in one profile (same stems)
counts once, under its first spelling.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import scipy.sparse as sp

from digest.analysis import author_key, stems, term_key
from digest.categories import covers
from digest.config import RankingSettings
from digest.items import PaperCard, RankedItem, Reason
from digest.profiles import Profile

MAX_LIMIT = 50
from time import perf_counter as _pc
from collections import defaultdict as _dd
_TT = _dd(float)
# Rarity: a term in this share of the day's papers counts 0.75 (halfway between 1 and 0.5).
_COMMON_SHARE = 0.1
# Pseudo-papers added to the day's count, so three papers that all say "model" do not make
# "model" look common.
_PSEUDO_PAPERS = 50
# Dense working arrays per chunk are (rows x papers); this many cells keeps them near 32 MB.
_CHUNK_CELLS = 4_000_000
_MIN_CHUNK_ROWS, _MAX_CHUNK_ROWS = 64, 4096
_NEW = "new"  # the trending label of a paper nobody has upvoted yet


@dataclass(frozen=True)
class RankRequest:
    profile: Profile
    limit: int  # most papers in the personal picks (1..50)
    since: datetime | None = None  # only papers first seen at or after this; None = all
    exclude_ids: frozenset[int] = frozenset()  # paper ids already sent: never candidates

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {self.limit}")


@dataclass(frozen=True, slots=True)
class _TermVector:
    """One include/exclude term's match against every paper, computed once per day."""

    columns: np.ndarray  # papers (column indexes) where the term occurs, ascending
    values: np.ndarray  # its unweighted relevance there: rarity * field-weighted saturation


@dataclass(slots=True)
class _Row:
    """One request turned into indexes: what the matrices of its chunk are built from."""

    terms: list[tuple[tuple[str, ...], int, float, Reason]]  # (key, term id, weight, reason)
    excludes: list[int]  # term ids
    authors: list[int]  # indexes into the day's author keys
    categories: list[int]  # indexes into the day's category tokens
    since: float  # POSIX seconds; -inf for "all"
    excluded_columns: list[int]
    topical: bool


def _timestamp(moment: datetime | None) -> float:
    if moment is None:
        return -math.inf
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _trending_reason(upvotes: int | None) -> Reason:
    return Reason("trending", str(upvotes) if upvotes else _NEW)


class Ranker:
    """The day's papers prepared once, ready to rank any number of subscribers."""

    def __init__(
        self, papers: Sequence[PaperCard], settings: RankingSettings, now: datetime
    ) -> None:
        """Per-day preparation, done ONCE for all subscribers: tokenise + stem titles and
        abstracts, word counts, author keys, category sets, the trending/freshness prior."""
        self.settings = settings
        self.now = now
        unique: dict[int, PaperCard] = {}
        for card in papers:
            unique.setdefault(card.paper_id, card)
        # Columns in paper-id order, so "lower column" is the deterministic tie-break.
        self._cards: list[PaperCard] = [unique[pid] for pid in sorted(unique)]
        self._n = n = len(self._cards)
        self._column = {card.paper_id: col for col, card in enumerate(self._cards)}
        self._ids = np.array([c.paper_id for c in self._cards], dtype=np.int64)

        self._prepare_text(settings)
        self._prepare_authors_and_categories()

        # The prior and the candidate clock.
        self._seen = np.array([_timestamp(c.first_seen_at) for c in self._cards], dtype=float)
        age_hours = np.maximum(0.0, (_timestamp(now) - self._seen) / 3600.0)
        freshness = np.where(
            np.isfinite(self._seen), 0.5 ** (age_hours / settings.freshness_half_life_hours), 0.0
        )
        upvotes = np.array([max(0, c.upvotes or 0) for c in self._cards], dtype=float)
        self._prior = settings.trending_weight * np.log1p(upvotes) + (
            settings.freshness_weight * freshness
        )
        # Trending order: by upvotes (unknown last), then newest, then paper id.
        trend_key = sorted(
            range(n),
            key=lambda col: (
                self._cards[col].upvotes is None,
                -(self._cards[col].upvotes or 0),
                -self._seen[col],
                col,
            ),
        )
        self._trend_order = np.array(trend_key, dtype=np.int64)
        self._hot_order = [col for col in trend_key if (self._cards[col].upvotes or 0) > 0]
        self._trend_reasons = [(_trending_reason(c.upvotes),) for c in self._cards]

        # Term registry, filled lazily as profiles mention terms and kept for the day.
        self._term_id_by_text: dict[str, int] = {}
        self._term_id_by_key: dict[tuple[str, ...], int] = {}
        self._term_keys: list[tuple[str, ...]] = []
        self._term_vectors: list[_TermVector] = []
        self._reasons: dict[tuple[str, str], Reason] = {}

    # -- per-day preparation -------------------------------------------------------------

    def _prepare_text(self, settings: RankingSettings) -> None:
        vocabulary: dict[str, int] = {}
        rows_t: list[int] = []
        cols_t: list[int] = []
        counts_t: list[int] = []
        rows_a: list[int] = []
        cols_a: list[int] = []
        counts_a: list[int] = []
        title_lengths = np.zeros(self._n)
        abstract_lengths = np.zeros(self._n)
        # Each stem wrapped in its own spaces (" a  b ") so str.count finds a phrase only as
        # whole, contiguous stems, and adjacent occurrences are both counted.
        self._title_text: list[str] = []
        self._abstract_text: list[str] = []
        for col, card in enumerate(self._cards):
            for text, rows, cols, counts, lengths, joined in (
                (card.title, rows_t, cols_t, counts_t, title_lengths, self._title_text),
                (card.abstract, rows_a, cols_a, counts_a, abstract_lengths, self._abstract_text),
            ):
                tokens = stems(text or "")
                lengths[col] = len(tokens)
                joined.append(" " + "  ".join(tokens) + " " if tokens else "")
                for word, count in Counter(tokens).items():
                    rows.append(vocabulary.setdefault(word, len(vocabulary)))
                    cols.append(col)
                    counts.append(count)
        self._vocabulary = vocabulary
        shape = (len(vocabulary), self._n)
        self._title_tf = sp.csr_matrix((counts_t, (rows_t, cols_t)), shape=shape, dtype=float)
        self._abstract_tf = sp.csr_matrix((counts_a, (rows_a, cols_a)), shape=shape, dtype=float)
        self._present = (self._title_tf + self._abstract_tf).tocsr()
        self._present.sort_indices()

        k1, b = settings.bm25_k1, settings.bm25_b
        average = abstract_lengths.mean() if self._n and abstract_lengths.mean() > 0 else 1.0
        # BM25's denominators: k1 * norm. Titles are not length-normalised (see the docstring).
        self._title_k = np.full(self._n, k1)
        self._abstract_k = k1 * (1.0 - b + b * abstract_lengths / average)

    def _prepare_authors_and_categories(self) -> None:
        author_index: dict[tuple[str, str], int] = {}
        self._author_names: list[dict[tuple[str, str], str]] = []  # the paper's spelling
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
        # meets it by plain equality (exactly what categories.covers means).
        token_index: dict[str, int] = {}
        rows, cols = [], []
        for col, card in enumerate(self._cards):
            tokens = {c for c in card.categories} | {c.split(".")[0] for c in card.categories}
            for token in sorted(tokens):
                rows.append(token_index.setdefault(token, len(token_index)))
                cols.append(col)
        self._category_index = token_index
        self._paper_categories = sp.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(len(token_index), self._n)
        )

    # -- terms ---------------------------------------------------------------------------

    def _term_id(self, text: str) -> int | None:
        """The registry id of a term (computing its paper vector once), None if it has no words."""
        found = self._term_id_by_text.get(text)
        if found is not None or text in self._term_id_by_text:
            return found
        key = term_key(text)
        term_id = self._term_id_by_key.get(key) if key else None
        if key and term_id is None:
            term_id = len(self._term_keys)
            self._term_id_by_key[key] = term_id
            self._term_keys.append(key)
            self._term_vectors.append(self._match(key))
        self._term_id_by_text[text] = term_id  # type: ignore[assignment]
        return term_id

    def _match(self, key: tuple[str, ...]) -> _TermVector:
        """Where a word or phrase occurs, and its unweighted relevance in each such paper."""
        empty = _TermVector(np.zeros(0, dtype=np.int64), np.zeros(0))
        rows = [self._vocabulary.get(word) for word in key]
        if any(row is None for row in rows):
            return empty
        if len(key) == 1:
            row = rows[0]
            columns = self._present.indices[
                self._present.indptr[row] : self._present.indptr[row + 1]
            ]
            columns = columns.astype(np.int64)
            tf_title = self._title_tf[row].toarray().ravel()[columns]
            tf_abstract = self._abstract_tf[row].toarray().ravel()[columns]
        else:
            # Papers holding every stem, then count the contiguous sequence in each field.
            candidates: np.ndarray | None = None
            for row in rows:
                present = self._present.indices[
                    self._present.indptr[row] : self._present.indptr[row + 1]
                ]
                candidates = present if candidates is None else np.intersect1d(candidates, present)
            needle = " " + "  ".join(key) + " "
            found: list[tuple[int, int, int]] = []
            for col in candidates if candidates is not None else ():
                in_title = self._title_text[col].count(needle)
                in_abstract = self._abstract_text[col].count(needle)
                if in_title or in_abstract:
                    found.append((int(col), in_title, in_abstract))
            if not found:
                return empty
            columns = np.array([f[0] for f in found], dtype=np.int64)
            tf_title = np.array([f[1] for f in found], dtype=float)
            tf_abstract = np.array([f[2] for f in found], dtype=float)
        if not len(columns):
            return empty
        settings = self.settings
        share = len(columns) / (self._n + _PSEUDO_PAPERS)
        rarity = 0.5 + 0.5 / (1.0 + share / _COMMON_SHARE)
        k1 = settings.bm25_k1
        with np.errstate(invalid="ignore", divide="ignore"):
            sat_title = np.where(
                tf_title > 0, tf_title * (k1 + 1) / (tf_title + self._title_k[columns]), 0.0
            )
            sat_abstract = np.where(
                tf_abstract > 0,
                tf_abstract * (k1 + 1) / (tf_abstract + self._abstract_k[columns]),
                0.0,
            )
        values = rarity * (
            settings.title_weight * sat_title + settings.abstract_weight * sat_abstract
        )
        return _TermVector(columns, values)

    def _reason(self, kind: str, label: str) -> Reason:
        # Shared Reason objects: 100,000 subscribers mostly repeat the same few thousand terms.
        found = self._reasons.get((kind, label))
        if found is None:
            found = self._reasons[(kind, label)] = Reason(kind, label)  # type: ignore[arg-type]
        return found

    # -- ranking -------------------------------------------------------------------------

    def rank(self, requests: Sequence[RankRequest]) -> list[list[RankedItem]]:
        """One list per request, in request order, best first."""
        if not requests:
            return []
        if self._n == 0:
            return [[] for _ in requests]
        rows_per_chunk = min(_MAX_CHUNK_ROWS, max(_MIN_CHUNK_ROWS, _CHUNK_CELLS // self._n))
        results: list[list[RankedItem]] = []
        for start in range(0, len(requests), rows_per_chunk):
            results.extend(self._rank_chunk(requests[start : start + rows_per_chunk]))
        return results

    def _row(self, request: RankRequest) -> _Row:
        profile = request.profile
        terms: dict[tuple[str, ...], tuple[tuple[str, ...], int, float, Reason]] = {}
        for term in profile.include:
            term_id = self._term_id(term.text)
            if term_id is None:
                continue
            key = self._term_keys[term_id]
            if key not in terms:  # the first spelling wins, as in profiles.parse_terms
                kind = "phrase" if len(key) > 1 else "term"
                terms[key] = (key, term_id, float(term.weight), self._reason(kind, term.text))
        excludes = {tid for text in profile.exclude if (tid := self._term_id(text)) is not None}
        authors = {
            index
            for name in profile.authors
            if (index := self._author_index.get(author_key(name))) is not None
        }
        categories = {
            index
            for chosen in profile.categories
            if (index := self._category_index.get(chosen)) is not None
        }
        excluded_columns = [self._column[pid] for pid in request.exclude_ids & self._column.keys()]
        return _Row(
            terms=sorted(terms.values()),  # stem order: the same sum order in any batch
            excludes=sorted(excludes),
            authors=sorted(authors),
            categories=sorted(categories),
            since=_timestamp(request.since),
            excluded_columns=excluded_columns,
            topical=profile.has_topics,
        )

    def _rank_chunk(self, requests: Sequence[RankRequest]) -> list[list[RankedItem]]:
        _t0 = _pc()
        rows = [self._row(request) for request in requests]
        _TT['rows'] += _pc() - _t0; _t0 = _pc()
        m, n = len(rows), self._n
        settings = self.settings

        # Subscriber x term weights times term x paper relevance. Local term ids follow stem
        # order, so every row sums its terms in the same order whatever else is in the batch
        # (bit-identical scores for batch and one-at-a-time ranking).
        include_ids = sorted(
            {t[1] for row in rows for t in row.terms}, key=lambda tid: self._term_keys[tid]
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
        relevance = (wanted @ terms_by_paper).toarray() if wanted.nnz else np.zeros((m, n))
        _TT['relevance'] += _pc() - _t0; _t0 = _pc()

        if any(row.authors for row in rows):
            followed = self._selection(rows, "authors", len(self._author_index))
            hits = (followed @ self._paper_authors).tocoo()
            relevance[hits.row, hits.col] += settings.author_boost * hits.data
        if any(row.categories for row in rows):
            chosen = self._selection(rows, "categories", len(self._category_index))
            hits = (chosen @ self._paper_categories).tocoo()
            relevance[hits.row, hits.col] += settings.category_boost
        _TT['auth+cat'] += _pc() - _t0; _t0 = _pc()

        # Candidates: new since the row's `since`, not already sent, not vetoed.
        since = np.array([row.since for row in rows])
        candidate = self._seen[None, :] >= since[:, None]
        for i, row in enumerate(rows):
            if row.excluded_columns:
                candidate[i, row.excluded_columns] = False
        _TT['since+excl'] += _pc() - _t0; _t0 = _pc()
        if any(row.excludes for row in rows):
            exclude_ids = sorted({tid for row in rows for tid in row.excludes})
            local_x = {tid: i for i, tid in enumerate(exclude_ids)}
            vetoes = sp.csr_matrix(
                (
                    np.ones(sum(len(row.excludes) for row in rows)),
                    [local_x[tid] for row in rows for tid in row.excludes],
                    np.cumsum([0] + [len(row.excludes) for row in rows]),
                ),
                shape=(m, len(exclude_ids)),
            )
            hits = (vetoes @ self._term_matrix(exclude_ids, presence=True)).tocoo()
            candidate[hits.row, hits.col] = False
        _TT['veto'] += _pc() - _t0; _t0 = _pc()

        # The floor applies to relevance alone; the prior only re-orders what passed it.
        passes = candidate & (relevance > 0) & (relevance >= settings.relevance_floor)
        score = np.where(passes, relevance + self._prior[None, :], -np.inf)
        _TT['score'] += _pc() - _t0; _t0 = _pc()
        limits = np.array(
            [
                request.limit if row.topical else 0
                for request, row in zip(requests, rows, strict=True)
            ]
        )
        top, top_score = _top_k(score, min(int(limits.max()), n))
        _TT['topk'] += _pc() - _t0; _t0 = _pc()

        picks_rows: list[int] = []
        picks_cols: list[int] = []
        for i, row in enumerate(rows):
            if not row.topical:
                continue
            chosen_cols = top[i, : limits[i]][np.isfinite(top_score[i, : limits[i]])]
            picks_rows.extend([i] * len(chosen_cols))
            picks_cols.extend(chosen_cols.tolist())
        _TT['picks'] += _pc() - _t0; _t0 = _pc()
        term_reasons = self._term_reasons(rows, wanted, terms_by_paper, picks_rows, picks_cols)
        _TT['termreasons'] += _pc() - _t0; _t0 = _pc()

        results: list[list[RankedItem]] = [[] for _ in rows]
        cards = self._cards
        relevance_picked = relevance[picks_rows, picks_cols].tolist()
        score_picked = score[picks_rows, picks_cols].tolist()
        for p, (i, col) in enumerate(zip(picks_rows, picks_cols, strict=True)):
            row = rows[i]
            matched = term_reasons[p]
            reasons = [reason for _value, reason in matched]
            if row.authors or row.categories:
                reasons = self._merge_reasons(row, requests[i].profile, col, matched)
            results[i].append(
                RankedItem(
                    paper_id=cards[col].paper_id,
                    score=score_picked[p],
                    relevance=relevance_picked[p],
                    reasons=tuple(reasons),
                    highlight=tuple(reason.label for _value, reason in matched),
                )
            )
        _TT['items'] += _pc() - _t0; _t0 = _pc()

        for i, (request, row) in enumerate(zip(requests, rows, strict=True)):
            if not row.topical:
                results[i] = self._trending(candidate[i], request.limit, relevance[i])
            elif request.profile.also_trending and settings.also_trending:
                picked = {item.paper_id for item in results[i]}
                results[i].extend(
                    self._also_trending(candidate[i], picked, settings.also_trending, relevance[i])
                )
        _TT['trending'] += _pc() - _t0; _t0 = _pc()
        return results

    def _term_matrix(self, term_ids: Sequence[int], presence: bool = False) -> sp.csr_matrix:
        """Rows of the registry's term vectors (relevance values, or 1 where present)."""
        vectors = [self._term_vectors[tid] for tid in term_ids]
        sizes = [len(v.columns) for v in vectors]
        indptr = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        if vectors and indptr[-1]:
            columns = np.concatenate([v.columns for v in vectors])
            values = (
                np.ones(len(columns)) if presence else np.concatenate([v.values for v in vectors])
            )
        else:
            columns, values = np.zeros(0, dtype=np.int64), np.zeros(0)
        return sp.csr_matrix((values, columns, indptr), shape=(len(term_ids), self._n))

    @staticmethod
    def _selection(rows: Sequence[_Row], field: str, width: int) -> sp.csr_matrix:
        picked = [getattr(row, field) for row in rows]
        indptr = np.cumsum([0] + [len(p) for p in picked])
        indices = [index for p in picked for index in p]
        return sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), width))

    def _term_reasons(
        self,
        rows: Sequence[_Row],
        wanted: sp.csr_matrix,
        terms_by_paper: sp.csr_matrix,
        picks_rows: Sequence[int],
        picks_cols: Sequence[int],
    ) -> list[list[tuple[float, Reason]]]:
        """For each chosen (row, paper): its matched include terms, largest contribution first.

        Only the chosen pairs are looked at, all at once: each pair's terms are expanded, their
        values read from the term x paper matrix, the non-matches dropped, then sorted.
        """
        out: list[list[tuple[float, Reason]]] = [[] for _ in picks_rows]
        if not picks_rows or not wanted.nnz:
            return out
        pair_rows = np.asarray(picks_rows)
        starts = wanted.indptr[pair_rows]
        counts = wanted.indptr[pair_rows + 1] - starts
        total = int(counts.sum())
        if not total:
            return out
        pair = np.repeat(np.arange(len(pair_rows)), counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        entry = np.repeat(starts, counts) + offsets
        values = np.asarray(
            terms_by_paper[wanted.indices[entry], np.asarray(picks_cols)[pair]]
        ).ravel()
        contribution = wanted.data[entry] * values
        keep = contribution > 0
        pair, entry, contribution = pair[keep], entry[keep], contribution[keep]
        # By pair, then largest contribution, then stem order (the entry order in the row).
        order = np.lexsort((entry, -contribution, pair))
        # Each row's reasons, in the same entry order as ``wanted``'s data.
        row_reasons = [reason for row in rows for _k, _t, _w, reason in row.terms]
        for p, e, c in zip(
            pair[order].tolist(), entry[order].tolist(), contribution[order].tolist(), strict=True
        ):
            out[p].append((c, row_reasons[e]))
        return out

    def _merge_reasons(
        self, row: _Row, profile: Profile, col: int, matched: list[tuple[float, Reason]]
    ) -> list[Reason]:
        """Term, author and category reasons together, by contribution (terms first on ties)."""
        card = self._cards[col]
        scored: list[tuple[float, int, Reason]] = [
            (value, order, reason) for order, (value, reason) in enumerate(matched)
        ]
        boost = self.settings.author_boost
        names = self._author_names[col]
        wanted_keys = {author_key(name) for name in profile.authors}
        for key, name in names.items():
            if key in wanted_keys:
                scored.append((boost, len(scored), self._reason("author", name)))
        for category in card.categories:
            if any(covers(chosen, category) for chosen in profile.categories):
                # One boost per paper however many categories match; name the first.
                scored.append(
                    (self.settings.category_boost, len(scored), self._reason("category", category))
                )
                break
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [reason for _value, _order, reason in scored]

    def _trending(
        self, candidate: np.ndarray, limit: int, relevance: np.ndarray
    ) -> list[RankedItem]:
        """A profile with no topics: the day's top trending candidates."""
        columns = self._trend_order[candidate[self._trend_order]][:limit].tolist()
        return [self._trending_item(col, relevance, "picks") for col in columns]

    def _also_trending(
        self, candidate: np.ndarray, picked: set[int], count: int, relevance: np.ndarray
    ) -> list[RankedItem]:
        items: list[RankedItem] = []
        for col in self._hot_order:
            if len(items) == count:
                break
            if candidate[col] and self._cards[col].paper_id not in picked:
                items.append(self._trending_item(col, relevance, "trending"))
        return items

    def _trending_item(self, col: int, relevance: np.ndarray, section: str) -> RankedItem:
        return RankedItem(
            paper_id=self._cards[col].paper_id,
            score=float(self._prior[col]),
            relevance=float(relevance[col]),
            reasons=self._trend_reasons[col],
            section=section,  # type: ignore[arg-type]
        )


def _top_k(score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best columns by (score desc, column asc), and their scores.

    argpartition picks the k best in linear time but breaks ties at the boundary arbitrarily;
    rows where a tie straddles the boundary are redone with a full, exact sort.
    """
    m, n = score.shape
    if k <= 0:
        return np.zeros((m, 0), dtype=np.int64), np.zeros((m, 0))
    negated = -score
    if k < n:
        part = np.argpartition(negated, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (m, n)).copy()
    values = np.take_along_axis(negated, part, axis=1)
    order = np.lexsort((part, values), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    top_values = np.take_along_axis(values, order, axis=1)
    if k < n:
        worst = top_values[:, -1]
        inside = (top_values == worst[:, None]).sum(axis=1)
        everywhere = (negated == worst[:, None]).sum(axis=1)
        for i in np.flatnonzero(np.isfinite(worst) & (everywhere > inside)):
            exact = np.lexsort((np.arange(n), negated[i]))[:k]
            top[i] = exact
            top_values[i] = negated[i, exact]
    return top, -top_values


def rank_one(
    papers: Sequence[PaperCard], settings: RankingSettings, now: datetime, request: RankRequest
) -> list[RankedItem]:
    """Rank one subscriber (tests, ``--user`` debugging); the batch path does the real work."""
    return Ranker(papers, settings, now).rank([request])[0]
