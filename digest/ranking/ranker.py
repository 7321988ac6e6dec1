"""Ranking a batch of profiles against the prepared day (see ``digest.ranking``)."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import numpy as np
import scipy.sparse as sp

from digest.config import RankingSettings
from digest.domain.categories import covers
from digest.domain.items import PaperCard, RankedItem, Reason
from digest.domain.profiles import Learned
from digest.ranking.parts import (
    _CHUNK_CELLS,
    _MAX_CHUNK_ROWS,
    _MAX_THREADS,
    _MIN_CHUNK_ROWS,
    _TEXT_BLOCK,
    _UNGRID,
    RankRequest,
    _cpu_count,
    _first,
    _lookup,
    _Row,
    _selection,
    _semantic_bonus,
    _smallest_k,
    _timestamp,
    _weighted_selection,
    _Workspace,
    gc_paused,
)
from digest.ranking.prepared import Prepared
from digest.ranking.semantic import SemanticMatch


class Ranker(Prepared):
    """The day's papers prepared once, ready to rank any number of subscribers."""

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
        with gc_paused():
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


def rank_one(
    papers: Sequence[PaperCard], settings: RankingSettings, now: datetime, request: RankRequest
) -> list[RankedItem]:
    """Rank one subscriber (tests, ``--user`` debugging); the batch path is the same code."""
    return Ranker(papers, settings, now).rank([request])[0]
