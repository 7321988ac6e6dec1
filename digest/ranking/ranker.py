"""Ranking a batch of profiles against the prepared day (see ``digest.ranking``)."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import chain

import numpy as np
import scipy.sparse as sp

from digest.config import RankingSettings
from digest.domain.analysis import term_key
from digest.domain.items import PaperCard, RankedItem, Reason
from digest.domain.profiles import Learned, Profile
from digest.ranking.explain import Explained, _PickParts
from digest.ranking.parts import (
    _CHUNK_CELLS,
    _MAX_CHUNK_ROWS,
    _MAX_THREADS,
    _MIN_CHUNK_ROWS,
    _TEXT_BLOCK,
    _UNGRID,
    _WEIGHT_GRID,
    RankRequest,
    _cpu_count,
    _largest_k,
    _product_into,
    _relative,
    _Row,
    _row_max,
    _selection,
    _smallest_k,
    _TermArrays,
    _timestamp,
    _Wanted,
    _weighted_selection,
    _Workspace,
    gc_paused,
)
from digest.ranking.query import units

# A reader's terms that count: term ids, weights, and where the learned ones start.
_Terms = tuple[list[int], list[float], int]
_TINY = 1e-12
# A learned weight faded below this no longer counts: relevance is relative to the reader's
# best paper, so a faint weight alone would otherwise still choose papers.
_FADED = 0.01  # relevance must be above this (0 never passes, even with relative_cut 0)


class Ranker(Explained):
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
        with gc_paused(results_kept=True):
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

    # -- one request as indexes --------------------------------------------------------------

    def _term(self, text: str, kind: str) -> tuple[int, int]:
        """An include term as written (``kind`` ""), a description (``"description"``) or a
        learned word (``"learned"``): its term id and key number (its stems, see
        ``_term_keys``; -1 for a term without any), registered on first sight with
        an entry per unit it matches by (unit, share of the term's weight, group, reason,
        highlight). Cached for the day.

        A pick names one reason per group, that of its largest unit: a phrase's units are one
        group, so a paper with the phrase says "model compression" and one with only its
        words the word that did most ("compression"); a description's words are a group each,
        and so is each learned word.
        """
        with self._terms_lock:
            known = self._known_terms[kind]
            found = known.get(text)
            if found is not None:
                return found
            entries = []
            parsed = units(text, self._query_weights)
            label = " ".join(text.split())
            if parsed is not None:
                group = self._group_number("phrase" if parsed.kind == "phrase" else "term", label)
                for unit in parsed.units:
                    uid = self._unit_id(unit.kind, unit.stems)
                    if kind == "learned":
                        reason_kind, reason_label = "learned", text
                    elif parsed.kind == "description" or (
                        parsed.kind == "phrase" and unit.kind == "word"
                    ):
                        reason_kind, reason_label = "term", unit.surface
                    else:
                        reason_kind = "phrase" if parsed.kind == "phrase" else "term"
                        reason_label = label
                    number = (
                        self._group_number(reason_kind, reason_label)
                        if parsed.kind == "description" or kind == "learned"
                        else group
                    )
                    reason = self._reason(reason_kind, reason_label)
                    entries.append((uid, unit.weight, number, reason, unit.surface))
            key = term_key(text)
            number = self._key_numbers.get(key, -1) if key else -1
            if key and number < 0:
                number = self._key_numbers[key] = len(self._term_keys)
                self._term_keys.append(key)
            # The entries first: another thread may use a term as soon as it has an id.
            found = known[text] = (self._term_table.add(entries), number)
            return found

    def _group_number(self, kind: str, label: str) -> int:
        """A number per (kind, label), so that a pick's units of one group are told apart
        from another's by an integer (called under ``_terms_lock``)."""
        return self._groups.setdefault((kind, label), len(self._groups))

    def _terms_of(self, profile: Profile, learned: Learned, fade: float) -> _Terms:
        """The reader's terms that count, as (term ids, weights, where the learned ones
        start): their terms, their description, then what feedback taught. A term given
        twice (the same stems) counts once, first spelling first; a learned word the reader
        chose themselves keeps the reader's weight (``_wanted`` also leaves out a learned
        word's units that the reader's own terms name)."""
        known = self._known_terms[""]
        ids: list[int] = []
        weights: list[float] = []
        own: set[int] = set()  # the key numbers of the reader's terms
        for term in profile.include:
            weight = float(term.weight)
            term_id, key = known.get(term.text) or self._term(term.text, "")
            # First spelling wins (as in profiles.parse_terms); a weight that is not a positive
            # number (only a hand-made Profile can have one) leaves the term out.
            if key < 0 or key in own or not 0 < weight < math.inf:
                continue
            own.add(key)
            ids.append(term_id)
            weights.append(weight)
        if profile.description:
            ids.append(self._term(profile.description, "description")[0])
            weights.append(1.0)
        learned_from = len(ids)
        if learned.terms or learned.model:
            keys, known = self._term_keys, self._known_terms["learned"]
            own_words = {keys[key][0] for key in own if len(keys[key]) == 1}
            for term in (*learned.terms, *learned.model):
                weight = float(term.weight) * fade
                term_id, key = known.get(term.text) or self._term(term.text, "learned")
                if key < 0 or not abs(weight) >= _FADED or key in own:
                    continue
                if len(keys[key]) == 1 and keys[key][0] in own_words:
                    continue
                ids.append(term_id)
                weights.append(weight)
        return ids, weights, learned_from

    def _row(self, request: RankRequest) -> _Row:
        profile = request.profile
        learned = profile.learned
        fade = learned.decay(self.now)
        term_ids, term_weights, learned_from = self._terms_of(profile, learned, fade)
        excludes: set[int] = set()
        for text in profile.exclude:
            if (uid := self._exclude_id(text)) is not None:
                excludes.add(uid)
        # Followed authors count author_boost; learned ones their own, smaller, faded weight.
        author_keys: dict[tuple[str, str], float] = {}
        for name in profile.authors:
            author_keys[self._author_key(name)] = self.settings.author_boost
        for author in learned.authors:
            weight = float(author.weight) * fade
            if _FADED <= weight < math.inf:
                author_keys.setdefault(self._author_key(author.name), weight)
        authors = sorted(
            (i, weight)
            for key, weight in author_keys.items()
            if (i := self._author_index.get(key)) is not None
        )
        categories = {
            i
            for chosen_category in profile.categories
            if (i := self._category_index.get(chosen_category)) is not None
        }
        sent = request.exclude_ids & self._id_set if request.exclude_ids else ()
        semantic: list[tuple[int, Reason]] = []
        if self._semantic is not None:
            for text in self._semantic.texts(profile):
                if (text_id := self._text_ids.get(text.key)) is not None:
                    semantic.append((text_id, self._reason("semantic", text.label)))
        return _Row(
            term_ids=term_ids,
            term_weights=term_weights,
            learned_from=learned_from,
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

    def _wanted(self, rows: Sequence[_Row]) -> _Wanted:
        """The chunk's unit weights (row x unit, in each row's unit order), the unit ids of
        its columns, each weight's term entry (what it shows, see ``_term``), and which rows
        have a positive weight to expand from.

        A unit named by several of a row's terms adds up their weights (term by term, in the
        row's order); a unit counts under the first term that names it (its reason); a
        learned word's unit that the reader's own terms or description name is left out.
        Weights are rounded onto ``_WEIGHT_GRID`` and those that round to 0 dropped. The rows'
        units come in the order their terms first name them.
        """
        m = len(rows)
        table = self._table_arrays()
        counts = np.fromiter((len(row.term_ids) for row in rows), dtype=np.int64, count=m)
        total = int(counts.sum())
        term_ids = np.fromiter(
            chain.from_iterable(row.term_ids for row in rows), dtype=np.int64, count=total
        )
        term_weights = np.fromiter(
            chain.from_iterable(row.term_weights for row in rows), dtype=float, count=total
        )
        term_rows = np.repeat(np.arange(m, dtype=np.int64), counts)
        learned_from = np.fromiter((row.learned_from for row in rows), dtype=np.int64, count=m)
        term_learned = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts) >= (
            np.repeat(learned_from, counts)
        )
        # Each term occurrence expanded into its entries, in occurrence order.
        per = table.count[term_ids]
        size = int(per.sum())
        entry = np.repeat(table.first[term_ids] - (np.cumsum(per) - per), per) + np.arange(size)
        row_of = np.repeat(term_rows, per)
        unit = table.unit[entry]
        value = np.repeat(term_weights, per) * table.share[entry]
        # Grouped by (row, unit, learned), occurrence order kept within each group.
        width = int(unit.max(initial=0)) + 1
        key = (row_of * width + unit) * 2 + np.repeat(term_learned, per)
        order = np.argsort(key, kind="stable")
        key = key[order]
        starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1]))) if size else order
        sizes = np.diff(np.append(starts, size))
        sums = value[order[starts]]
        # Added one term at a time, in the row's order (as a reader's weights were always
        # added): a float sum's last bit depends on its order.
        for depth in range(1, int(sizes.max(initial=1))):
            deeper = np.flatnonzero(sizes > depth)
            sums[deeper] += value[order[starts[deeper] + depth]]
        heads = order[starts]  # each group's first occurrence
        grouped = key[starts]
        # A learned group right after the reader's own group of the same unit is left out.
        shadowed = np.zeros(len(starts), dtype=bool)
        shadowed[1:] = (grouped[1:] >> 1) == (grouped[:-1] >> 1)
        weights = np.rint(sums * _WEIGHT_GRID) / _WEIGHT_GRID
        keep = np.flatnonzero(~shadowed & (weights != 0))
        by_position = np.argsort(heads[keep])
        heads, weights = heads[keep][by_position], weights[keep][by_position]
        rows_at = row_of[heads]
        unit_ids, local = np.unique(unit[heads], return_inverse=True)
        indptr = np.searchsorted(rows_at, np.arange(m + 1))
        expands = np.zeros(m, dtype=bool)
        expands[rows_at[weights > 0]] = True
        return _Wanted(
            sp.csr_matrix((weights, local.ravel(), indptr), shape=(m, len(unit_ids))),
            unit_ids,
            entry[heads],
            expands,
            table,
        )

    def _table_arrays(self) -> _TermArrays:
        with self._terms_lock:
            return self._term_table.arrays()

    # -- a chunk of rows ---------------------------------------------------------------------

    def _rank_chunk(
        self, requests: Sequence[RankRequest], work: _Workspace
    ) -> list[list[RankedItem]]:
        rows = [self._row(request) for request in requests]
        m, n = len(rows), self._n
        settings = self.settings

        # Keyword relevance: subscriber x unit weights times unit x paper values. Both are on
        # binary grids (``_VALUE_GRID``, ``_WEIGHT_GRID``), so every sum is exact and a row
        # scores the same whatever else is in the batch and in whatever order.
        chosen = self._wanted(rows)
        wanted, unit_ids = chosen.matrix, chosen.unit_ids
        units_by_paper = self._unit_matrix(unit_ids)
        keywords = work.relevance[:m]
        if wanted.nnz:
            _product_into(wanted, units_by_paper, keywords, work)
        else:
            keywords.fill(0.0)
        met = None  # where a followed author or category met a paper
        if any(row.authors for row in rows):
            hits = (
                _weighted_selection([row.authors for row in rows], len(self._author_index))
                @ self._paper_authors
            ).tocoo()
            keywords[hits.row, hits.col] += hits.data  # each author's weight, summed
            met = work.met[:m]
            met.fill(False)
            met[hits.row, hits.col] = True
        if any(row.categories for row in rows):
            hits = (
                _selection([row.categories for row in rows], len(self._category_index))
                @ self._paper_categories
            ).tocoo()
            keywords[hits.row, hits.col] += settings.category_boost  # once, however many
            if met is None:
                met = work.met[:m]
                met.fill(False)
            met[hits.row, hits.col] = True

        blocked = self._blocked(rows, work.blocked[:m])
        np.copyto(keywords, 0.0, where=blocked)
        # Relative to the reader's best paper today (1 there), whatever the size of the day
        # or the number of terms.
        best = _row_max(keywords)
        per_best = np.where(best > 0, 1.0 / np.where(best > 0, best, 1.0), 0.0)

        semantic = self._semantic  # read once: a failed embedding may turn it off meanwhile
        closeness = None
        first = keywords  # what chooses the papers the expansion starts from
        if semantic is not None and any(row.semantic for row in rows):
            closeness = work.closeness[:m]
            self._closeness(rows, closeness)
            np.copyto(closeness, -1.0, where=blocked)
            if semantic.weight:
                first = work.first[:m]
                np.multiply(keywords, per_best[:, None], out=first)
                near = _relative(closeness.copy(), semantic.min_cosine, _row_max(closeness))
                near *= semantic.weight
                first += near

        # The expansion: the reader's best papers stand in for the words and meaning the
        # reader did not write down.
        feedback = self._feedback(first, settings.expansion_papers)
        relevance = work.cost[:m]  # the blend; the costs are made from it at the end
        share = settings.expansion_weight
        expanding = chosen.expands.copy()
        lexical = None
        if feedback is not None and share > 0 and expanding.any():
            lexical = work.expansion[:m]
            _product_into(feedback, self._lexical_for_products(), lexical)
            top = _row_max(lexical, where=~blocked)
            lexical *= (np.where(top > 0, share / np.where(top > 0, top, 1.0), 0.0) * expanding)[
                :, None
            ]
        else:
            expanding[:] = False
        own_scale = per_best * np.where(expanding, 1.0 - share, 1.0)  # the reader's own words
        np.multiply(keywords, own_scale[:, None], out=relevance)
        if lexical is not None:
            relevance += lexical
        meaning = None
        if feedback is not None and semantic is not None and semantic.expansion_weight:
            meaning = work.meaning[:m]
            self._closeness_to_best(feedback, meaning)
            # The best papers are close to themselves: scale by the best of the others.
            others = ~blocked
            others[feedback.nonzero()] = False
            top = _row_max(meaning, where=others)
            # No other paper is close enough to scale by (or every open paper is one of the
            # best): scale by the best of all.
            alone = ~(top > semantic.expansion_min_cosine)
            if alone.any():
                top[alone] = _row_max(meaning[alone], where=~blocked[alone])
            _relative(meaning, semantic.expansion_min_cosine, top)
            meaning *= semantic.expansion_weight
            relevance += meaning

        # The cut: a share of the reader's best today, never filler below it; the prior only
        # re-orders what passed.
        floor = np.maximum(settings.relative_cut * _row_max(relevance), _TINY)
        failed = work.failed[:m]
        np.less(relevance, floor[:, None], out=failed)
        failed |= blocked
        pick_relevance_all = relevance  # read at the picks below, before it becomes costs
        limits = np.array([row.limit for row in rows])
        k = min(int(limits.max()), n)
        cost = relevance  # in place: -(prior + relevance), +inf where failed
        np.subtract(self._negative_prior[None, :], pick_relevance_all, out=cost)
        np.copyto(cost, np.inf, where=failed)
        top_cols, top_cost = _smallest_k(cost, k)
        take = np.isfinite(top_cost) & (np.arange(k)[None, :] < limits[:, None])
        pick_rows, pick_ranks = np.nonzero(take)
        pick_cols = top_cols[pick_rows, pick_ranks]
        zeros = np.zeros(len(pick_rows))
        parts = _PickParts(
            keywords[pick_rows, pick_cols] * own_scale[pick_rows],
            lexical[pick_rows, pick_cols] if lexical is not None else zeros,
            meaning[pick_rows, pick_cols] if meaning is not None else zeros,
        )
        people = met[pick_rows, pick_cols] if met is not None else np.zeros(len(pick_rows), bool)
        items = self._picked_items(
            rows,
            chosen,
            units_by_paper,
            pick_rows,
            pick_cols,
            -top_cost[pick_rows, pick_ranks],
            parts,
            people,
            feedback,
            (closeness, semantic) if closeness is not None and semantic is not None else None,
        )
        bounds = np.concatenate(([0], np.cumsum(take.sum(axis=1)))).tolist()
        results = [items[bounds[i] : bounds[i + 1]] for i in range(m)]

        for i, row in enumerate(rows):
            if not row.limit:
                results[i] = self._trending(
                    blocked[i], requests[i].limit, keywords[i] * per_best[i]
                )
            elif row.also_trending and settings.also_trending:
                results[i].extend(
                    self._also_trending(blocked[i], results[i], keywords[i] * per_best[i])
                )
        return results

    def _blocked(self, rows: Sequence[_Row], blocked: np.ndarray) -> np.ndarray:
        """Seen before the row's ``since``, already sent, or vetoed by an exclude term."""
        since = np.array([row.since for row in rows])
        np.less(self._seen[None, :], since[:, None], out=blocked)
        for i, row in enumerate(rows):
            if row.excluded_columns:
                blocked[i, row.excluded_columns] = True
        if any(row.excludes for row in rows):
            exclude_ids = sorted({uid for row in rows for uid in row.excludes})
            local = {uid: i for i, uid in enumerate(exclude_ids)}
            vetoes = _selection(
                [[local[uid] for uid in row.excludes] for row in rows], len(exclude_ids)
            )
            hits = (vetoes @ self._unit_matrix(exclude_ids, presence=True)).tocoo()
            blocked[hits.row, hits.col] = True
        return blocked

    def _feedback(self, first: np.ndarray, k: int) -> sp.csr_matrix | None:
        """Each row's ``k`` best papers by ``first`` (blocked ones are 0 there) that reach
        ``relative_cut`` of its best, weighted by ``first`` and summing to 1 per row: the
        papers its expansion starts from. None when no row has any."""
        if k <= 0:
            return None
        top, values = _largest_k(first, min(k, self._n))
        # Only papers that pass the cut on their own: a weak match is no example to follow.
        valid = (values > 0) & (values >= self.settings.relative_cut * values[:, :1])
        if not valid.any():
            return None
        values = np.where(valid, values, 0.0)
        totals = values.sum(axis=1)
        values /= np.where(totals > 0, totals, 1.0)[:, None]
        counts = valid.sum(axis=1)
        indptr = np.concatenate(([0], np.cumsum(counts)))
        # Valid entries come first in each row (sorted by value, largest first).
        return sp.csr_matrix((values[valid], top[valid], indptr), shape=(first.shape[0], self._n))

    def _closeness_to_best(self, feedback: sp.csr_matrix, out: np.ndarray) -> None:
        """Each paper's mean cosine to the row's best papers (weighted as in ``feedback``).

        The weighted sum of the best papers' grid vectors is rounded back onto the grid, so
        every cosine is again an exact integer sum: the same in any batch.
        """
        centroids = np.rint(feedback @ self._paper_grid)
        np.matmul(centroids, self._paper_grid.T, out=out)
        out *= _UNGRID

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
