"""Why each pick was picked: its reasons and the words to highlight, built for all of a
chunk's picks at once (see ``digest.ranking``).

A pick names its own terms by what they added (a phrase before its words), then what the
expansion did for it: "related: <words>" for the best papers' words, "close to <text>" for
meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from digest.domain.categories import covers
from digest.domain.items import RankedItem, Reason
from digest.ranking.parts import _UNGRID, _first, _lookup, _Row, _Wanted
from digest.ranking.prepared import Prepared
from digest.ranking.semantic import SemanticMatch, short_label

_RELATED_SHOWN = 2  # "related: pruning, quantization"
_COMMON_SHARE = 0.1  # a word in this share of the day's papers is too common to name


@dataclass(frozen=True, slots=True)
class _PickParts:
    """Per pick, what its relevance is made of."""

    own: np.ndarray  # the reader's own words (terms, description, learned), authors, categories
    lexical: np.ndarray  # the expansion by the best papers' words
    meaning: np.ndarray  # closeness in meaning to the best papers


@dataclass(frozen=True, slots=True)
class _Fed:
    """Picks of readers with feedback: each pick's reader row and paper column, the
    readers' feedback (row x paper), and the reasons found so far by pick index."""

    rows: np.ndarray
    cols: np.ndarray
    feedback: sp.csr_matrix
    found: dict[int, tuple[list[Reason], list[str]]]


class Explained(Prepared):
    """The prepared day, able to say why a paper was picked for a reader."""

    # -- the chosen items --------------------------------------------------------------------

    def _picked_items(
        self,
        rows: Sequence[_Row],
        chosen: _Wanted,
        units_by_paper: sp.csr_matrix,
        pick_rows: np.ndarray,
        pick_cols: np.ndarray,
        pick_scores: np.ndarray,
        parts: _PickParts,
        people: np.ndarray,
        feedback: sp.csr_matrix | None,
        closeness: tuple[np.ndarray, SemanticMatch] | None = None,
    ) -> list[RankedItem]:
        """RankedItems for the chosen (row, paper) pairs, with reasons and highlight terms.

        Only the chosen pairs are looked at, all at once: each pair's units are expanded,
        their values read from the unit x paper matrix, the non-matches dropped, the rest
        sorted by pair, then contribution (largest first), then unit order.
        """
        wanted, table = chosen.matrix, chosen.table
        pairs = len(pick_rows)
        starts = wanted.indptr[pick_rows]
        counts = wanted.indptr[pick_rows + 1] - starts
        pair = np.repeat(np.arange(pairs), counts)
        entry = np.arange(int(counts.sum())) + np.repeat(
            starts - (np.cumsum(counts) - counts), counts
        )
        # Most of a row's units are not in a given paper: a dense table (units x papers) of
        # where each unit's value for a paper is stored (plus 1; 0 where it does not occur)
        # rules those out and finds the others' values by plain indexing.
        units_at = wanted.indices[entry]
        stored = np.zeros(
            units_by_paper.shape, dtype=np.int32 if units_by_paper.nnz < 2**31 - 1 else np.int64
        )
        stored[
            np.repeat(np.arange(units_by_paper.shape[0]), np.diff(units_by_paper.indptr)),
            units_by_paper.indices,
        ] = np.arange(1, units_by_paper.nnz + 1)
        at = stored[units_at, pick_cols[pair]]
        found = at > 0
        pair, entry = pair[found], entry[found]
        contribution = wanted.data[entry] * units_by_paper.data[at[found] - 1]
        keep = contribution > 0
        pair, entry, contribution = pair[keep], entry[keep], contribution[keep]
        terms = chosen.entries[entry]  # the term entry each contribution counts under

        # Reasons: one per group (see Ranker._term), named by its phrase when the phrase (or
        # its words near each other) matched, else by its largest word; groups in order of
        # what they added up to, largest first.
        groups = table.group[terms]
        phrase = table.phrase[terms]
        # Sorted by pair, group, phrase first, contribution (largest first), then unit order:
        # two sorts rather than lexsort's five. The stable sort by contribution keeps equal
        # ones in the order they were built (pair, then unit), and the stable sort by
        # (pair, group, phrase) keeps that order within each.
        by_value = np.argsort(-contribution, kind="stable")
        grouping = (pair.astype(np.int64) * (int(groups.max(initial=0)) + 1) + groups) * 2
        grouping += ~phrase
        order = by_value[np.argsort(grouping[by_value], kind="stable")]
        g_pair, g_group = pair[order], groups[order]
        starts = np.flatnonzero(
            np.concatenate(([True], (g_pair[1:] != g_pair[:-1]) | (g_group[1:] != g_group[:-1])))
        )[: len(g_pair)]
        totals = np.add.reduceat(contribution[order], starts) if len(starts) else contribution[:0]
        named, named_pair = entry[order][starts], g_pair[starts]
        by_size = np.lexsort((named, -totals, named_pair))
        named, named_pair, totals = named[by_size], named_pair[by_size], totals[by_size]
        reason_bounds = np.searchsorted(named_pair, np.arange(pairs + 1)).tolist()
        # Tuples: a slice of one is the item's tuple itself.
        reasons = tuple(table.reason[chosen.entries[named]].tolist())
        reason_values = totals.tolist()

        # Highlights: every word or phrase that matched, in the reader's order (a surface is
        # one unit's, so none repeats; the words-near-each-other unit has none of its own).
        shown = table.surfaced[terms]
        surfaces = tuple(table.surface[terms[shown]].tolist())
        surface_bounds = np.searchsorted(pair[shown], np.arange(pairs + 1)).tolist()

        extra = self._expansion_reasons(
            rows, chosen, pick_rows, pick_cols, parts, feedback, closeness
        )
        # Most picks are their terms' reasons alone: made in one pass, and the few with an
        # author, a category or the expansion among their reasons redone after.
        items = [
            RankedItem(paper_id, score, relevance, reasons[a:b], "picks", surfaces[c:d])
            for paper_id, score, relevance, a, b, c, d in zip(
                self._id_array[pick_cols].tolist(),
                pick_scores.tolist(),
                (parts.own + parts.lexical).tolist(),
                reason_bounds[:-1],
                reason_bounds[1:],
                surface_bounds[:-1],
                surface_bounds[1:],
                strict=True,
            )
        ]
        for index in np.flatnonzero(people).tolist():
            a, b = reason_bounds[index], reason_bounds[index + 1]
            items[index].reasons = self._with_people_and_places(
                rows[int(pick_rows[index])], int(pick_cols[index]), reason_values[a:b], reasons[a:b]
            )
        for index, (more_reasons, more_words) in extra.items():
            item = items[index]
            item.reasons = (*item.reasons, *more_reasons)
            item.highlight = tuple(dict.fromkeys((*item.highlight, *more_words)))
        return items

    def _with_people_and_places(
        self, row: _Row, col: int, values: list[float], term_reasons: Sequence[Reason]
    ) -> tuple[Reason, ...]:
        """Term, author and category reasons together by contribution (terms first on ties)."""
        scored = list(zip(values, term_reasons, strict=True))
        if row.author_keys:
            for key, name in self._author_names[col].items():
                if key in row.author_keys:
                    scored.append((row.author_keys[key], self._reason("author", name)))
        if row.chosen_categories:
            scored.extend(self._category_reason(row.chosen_categories, col))
        scored.sort(key=_first, reverse=True)  # stable: equal contributions keep their order
        return tuple(reason for _value, reason in scored)

    def _expansion_reasons(
        self,
        rows: Sequence[_Row],
        chosen: _Wanted,
        pick_rows: np.ndarray,
        pick_cols: np.ndarray,
        parts: _PickParts,
        feedback: sp.csr_matrix | None,
        closeness: tuple[np.ndarray, SemanticMatch] | None,
    ) -> dict[int, tuple[list[Reason], list[str]]]:
        """Reasons beyond the reader's own words, per pick index: (reasons, highlights).

        - "close to <text>" where the paper's closeness to a profile text reaches the
          threshold;
        - "related: <words>" where the expansion by words did more for the paper than the
          reader's own words: the best papers' distinctive words it shares, best first;
        - "close to <paper>" where closeness in meaning to the reader's best papers did more
          than words, and no profile text was close enough to name.
        """
        found: dict[int, tuple[list[Reason], list[str]]] = {}
        if closeness is not None:
            close, semantic = closeness
            near = np.flatnonzero(close[pick_rows, pick_cols] >= semantic.threshold)
            for index in near.tolist():
                row, col = rows[int(pick_rows[index])], int(pick_cols[index])
                ids = [text_id for text_id, _reason in row.semantic]
                cosines = (self._text_grid[ids] @ self._paper_grid[col]) * _UNGRID
                best = int(np.argmax(cosines - self._text_offsets[ids]))  # first on ties
                found.setdefault(index, ([], []))[0].append(row.semantic[best][1])
        if feedback is None:
            return found
        fed = _Fed(pick_rows, pick_cols, feedback, found)
        by_words = np.flatnonzero(parts.lexical > parts.own)
        if len(by_words):
            self._related_words(chosen, by_words, fed)
        by_meaning = np.flatnonzero(parts.meaning > parts.own + parts.lexical)
        if len(by_meaning) and self._semantic is not None:
            self._related_papers(by_meaning, fed)
        return found

    def _related_words(self, chosen: _Wanted, picks: np.ndarray, fed: _Fed) -> None:
        """The feedback papers' distinctive words that each of ``picks`` shares (not the
        reader's own: those are named as terms)."""
        bag = (fed.feedback[fed.rows[picks]] @ self._distinctive_matrix()).tocsr()  # pick x stem
        bag.sort_indices()
        counts = np.diff(bag.indptr)
        owner = np.repeat(np.arange(len(picks)), counts)
        stems = bag.indices.astype(np.int64)
        score = bag.data * _lookup(self._words, stems, fed.cols[picks][owner])
        keep = score > 0
        owner, stems, score = owner[keep], stems[keep], score[keep]
        order = np.lexsort((stems, -score, owner))
        owner, stems = owner[order], stems[order]
        bounds = np.searchsorted(owner, np.arange(len(picks) + 1))
        keys, vocabulary = self._unit_keys, self._vocabulary
        # Named only if it says something: not one of the reader's own words, not a word of
        # one paper in ten or more, not a fragment ("pre" of "pre-trained").
        common = max(3.0, _COMMON_SHARE * self._n)
        indptr, columns, unit_ids = chosen.matrix.indptr, chosen.matrix.indices, chosen.unit_ids
        for k, index in enumerate(picks.tolist()):
            row = int(fed.rows[index])
            units = unit_ids[columns[indptr[row] : indptr[row + 1]]].tolist()
            own = {vocabulary.get(s) for uid in units for s in keys[uid][1]}
            chosen = [
                s
                for s in stems[bounds[k] : bounds[k + 1]].tolist()
                if s not in own and self._df[s] <= common and len(self._stem_of[s]) >= 4
            ]
            chosen = chosen[:_RELATED_SHOWN]
            if chosen:
                words = [self._spelling[self._stem_of[s]] for s in chosen]
                entry = fed.found.setdefault(index, ([], []))
                entry[0].extend(self._reason("related", word) for word in words)
                entry[1].extend(words)

    def _related_papers(self, picks: np.ndarray, fed: _Fed) -> None:
        """For picks chosen mostly by meaning: the closest of the reader's best papers."""
        for index in picks.tolist():
            if index in fed.found and any(r.kind == "semantic" for r in fed.found[index][0]):
                continue
            row, col = int(fed.rows[index]), int(fed.cols[index])
            start, end = fed.feedback.indptr[row], fed.feedback.indptr[row + 1]
            sources = [int(c) for c in fed.feedback.indices[start:end] if int(c) != col]
            if not sources:
                continue
            cosines = self._paper_grid[sources] @ self._paper_grid[col]
            source = sources[int(np.argmax(cosines))]
            title = short_label(" ".join(self._cards[source].title.split()))
            fed.found.setdefault(index, ([], []))[0].append(self._reason("semantic", title))

    def _category_reason(self, chosen: Sequence[str], col: int) -> list[tuple[float, Reason]]:
        # One boost per paper however many of its categories are covered; name the first
        # (the primary category when it is covered).
        for category in self._cards[col].categories:
            for wanted in chosen:
                if covers(wanted, category):
                    return [(self.settings.category_boost, self._reason("category", category))]
        return []
