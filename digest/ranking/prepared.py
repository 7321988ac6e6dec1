"""The per-day preparation a ranker does once for all subscribers."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import scipy.sparse as sp

from digest.config import RankingSettings
from digest.domain.analysis import author_key, term_key, words
from digest.domain.items import PaperCard, Reason
from digest.ranking.parts import (
    _DENSE_CELLS,
    _NEW,
    RankRequest,
    _largest_k,
    _log,
    _on_grid,
    _on_value_grid,
    _TermTable,
    _timestamp,
    _UnitVector,
)
from digest.ranking.query import NEAR_WINDOW, STOP_STEMS, QueryWeights, UnitKind
from digest.ranking.semantic import ProfileText, SemanticMatch

# A paper's distinctive words (tf-idf within the day) that stand for it in the expansion.
EXPANSION_WORDS = 20
# Neighbours kept per paper for the expansion by words (the papers its distinctive words find
# best): a reader's expansion only lifts papers close to one of their best papers, and memory
# stays at papers x NEIGHBOURS whatever the size of the day.
NEIGHBOURS = 128
_MIN_WORD_CHARS = 3
_TOP_BLOCK_CELLS = 2_000_000  # rows made dense at once by _top_per_row


class Prepared:
    """The day's papers prepared once: stems, BM25F weights, units, authors, categories,
    the prior, the expansion's neighbours and (optionally) vectors.
    :class:`digest.ranking.ranker.Ranker` ranks with it."""

    def __init__(
        self,
        papers: Sequence[PaperCard],
        settings: RankingSettings,
        now: datetime,
        *,
        semantic: SemanticMatch | None = None,
    ) -> None:
        self.settings = settings
        self.now = now
        self._query_weights = QueryWeights(
            phrase=settings.phrase_weight,
            proximity=settings.proximity_weight,
            description=settings.description_weight,
        )
        unique: dict[int, PaperCard] = {}
        for card in papers:
            unique.setdefault(card.paper_id, card)
        # Columns in paper-id order, so "lower column" is the deterministic tie-break.
        self._cards: list[PaperCard] = [unique[pid] for pid in sorted(unique)]
        self._n = len(self._cards)
        self._ids: list[int] = [card.paper_id for card in self._cards]
        self._id_array = np.array(self._ids, dtype=np.int64)  # column -> paper id, vectorised
        self._column = {pid: col for col, pid in enumerate(self._ids)}
        self._id_set = frozenset(self._ids)

        self._prepare_text()
        self._prepare_authors_and_categories()
        self._prepare_prior()

        # Units are registered lazily as profiles mention them, then kept for the day.
        self._unit_ids: dict[tuple[UnitKind, tuple[str, ...]], int] = {}
        self._unit_keys: list[tuple[UnitKind, tuple[str, ...]]] = []
        self._unit_vectors: list[_UnitVector] = []
        self._flat_units = (np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))
        self._registering = threading.Lock()  # chunks on several threads meet new units
        # Terms are registered lazily too (see Ranker._term): per kind, text -> (term id, key
        # number), and per term a run of entries, one per unit it matches by, in _TermTable's
        # lists. Key numbers stand for the terms' stems (_term_keys), -1 for none.
        self._known_terms: dict[str, dict[str, tuple[int, int]]] = {
            "": {},
            "description": {},
            "learned": {},
        }
        self._key_numbers: dict[tuple[str, ...], int] = {}
        self._term_keys: list[tuple[str, ...]] = []
        self._term_table = _TermTable()
        self._groups: dict[tuple[str, str], int] = {}  # see Ranker._group_number
        self._terms_lock = threading.Lock()  # taken before _registering, never after
        self._excludes: dict[str, int | None] = {}
        self._reasons: dict[tuple[str, str], Reason] = {}
        self._author_keys: dict[str, tuple[str, str]] = {}
        self._neighbours_lock = threading.Lock()
        self._lexical: sp.csr_matrix | None = None  # computed on first use
        self._lexical_dense: np.ndarray | None = None
        self._distinctive: sp.csr_matrix | None = None
        self._prepare_semantic(semantic)

    # -- per-day preparation ---------------------------------------------------------------

    def _prepare_text(self) -> None:
        vocabulary: dict[str, int] = {}
        spelling: dict[str, str] = {}  # stem -> its first spelling today, for "related: ..."
        title_counts: tuple[list[int], list[int], list[int]] = ([], [], [])
        abstract_counts: tuple[list[int], list[int], list[int]] = ([], [], [])
        abstract_lengths = np.zeros(self._n)
        # Each field's stems, for phrases (wrapped in spaces, " a  b ", so str.count finds a
        # phrase only as whole, contiguous stems) and for words near each other.
        self._occurrences: tuple[_Occurrences, _Occurrences] | None = None
        self._title_stems: list[list[str]] = []
        self._abstract_stems: list[list[str]] = []
        self._title_text: list[str] = []
        self._abstract_text: list[str] = []
        for col, card in enumerate(self._cards):
            for text, (rows, cols, counts), kept, joined in (
                (card.title, title_counts, self._title_stems, self._title_text),
                (card.abstract, abstract_counts, self._abstract_stems, self._abstract_text),
            ):
                found = words(text or "")
                tokens = [word_stem for word_stem, _start, _end in found]
                for word_stem, start, end in found:
                    if word_stem not in spelling:
                        spelling[word_stem] = (text or "")[start:end].lower()
                if kept is self._abstract_stems:
                    abstract_lengths[col] = len(tokens)
                kept.append(tokens)
                joined.append(" " + "  ".join(tokens) + " " if tokens else "")
                counted: dict[str, int] = {}
                for token in tokens:
                    counted[token] = counted.get(token, 0) + 1
                for word, count in counted.items():
                    rows.append(vocabulary.setdefault(word, len(vocabulary)))
                    cols.append(col)
                    counts.append(count)
        self._vocabulary = vocabulary
        self._stem_of = list(vocabulary)
        self._spelling = spelling
        shape = (len(vocabulary), self._n)
        rows, cols, counts = title_counts
        title_tf = sp.csr_matrix((counts, (rows, cols)), shape=shape, dtype=float)
        rows, cols, counts = abstract_counts
        abstract_tf = sp.csr_matrix((counts, (rows, cols)), shape=shape, dtype=float)

        # BM25F: one term frequency per paper, the title's counted title_weight times and the
        # abstract's length-normalised, then saturated once; times the word's idf.
        settings = self.settings
        average = float(abstract_lengths.mean()) if self._n else 0.0
        ratio = abstract_lengths / average if average > 0 else np.ones(self._n)
        self._abstract_scale = settings.abstract_weight / (
            1.0 - settings.bm25_b + settings.bm25_b * ratio
        )
        effective = (
            title_tf * settings.title_weight + abstract_tf @ sp.diags(self._abstract_scale)
        ).tocsr()
        effective.sort_indices()
        effective.eliminate_zeros()
        self._df = np.diff((title_tf + abstract_tf).tocsr().indptr).astype(float)
        self._idf = self._idf_of(self._df)
        weights = effective.copy()
        weights.data = self._saturate(weights.data)
        weights = (sp.diags(self._idf) @ weights).tocsr()
        weights.data = _on_value_grid(weights.data)
        self._words: sp.csr_matrix = weights  # stem x paper: a word unit's values
        self._words.sort_indices()
        self._title_tf, self._abstract_tf = title_tf, abstract_tf

    def _idf_of(self, df: np.ndarray | float) -> np.ndarray:
        """BM25's idf, ln(1 + (N - df + 0.5) / (df + 0.5)): always above 0."""
        return np.log1p((self._n - np.asarray(df, dtype=float) + 0.5) / (np.asarray(df) + 0.5))

    def _saturate(self, tf: np.ndarray) -> np.ndarray:
        k1 = self.settings.bm25_k1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tf > 0, tf * (k1 + 1.0) / (tf + k1), 0.0)

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
        self._has_vector = np.zeros(self._n, dtype=bool)
        for col, pid in enumerate(self._ids):
            if (vector := vectors[pid]) is not None:
                self._paper_grid[col] = _on_grid(vector)
                self._has_vector[col] = True

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

    # -- units -----------------------------------------------------------------------------

    def _unit_id(self, kind: UnitKind, key: tuple[str, ...]) -> int:
        """The registry id of a unit, its paper vector computed on first sight."""
        found = self._unit_ids.get((kind, key))
        if found is not None:
            return found
        with self._registering:
            found = self._unit_ids.get((kind, key))
            if found is None:
                self._unit_vectors.append(self._match(kind, key))
                self._unit_keys.append((kind, key))
                found = self._unit_ids[(kind, key)] = len(self._unit_keys) - 1
            return found

    def _match(self, kind: UnitKind, key: tuple[str, ...]) -> _UnitVector:
        """Where a unit occurs, and its BM25F value there (idf times saturated frequency)."""
        rows = [self._vocabulary.get(word) for word in key]
        if any(row is None for row in rows):  # a stem no paper has
            return _UnitVector(np.zeros(0, dtype=np.int64), np.zeros(0))
        if kind == "word" or len(key) == 1:
            words = self._words
            row = rows[0]
            start, end = words.indptr[row], words.indptr[row + 1]  # type: ignore[index]
            return _UnitVector(
                words.indices[start:end].astype(np.int64), words.data[start:end].copy()
            )
        if kind != "phrase":
            title, abstract = self._near_counts(rows)  # type: ignore[arg-type]
            columns = np.flatnonzero(title | abstract)
            return self._unit_vector(columns, title[columns], abstract[columns])
        if not _overlaps_itself(key) and len(key) <= NEAR_WINDOW + 1:
            title, abstract = self._phrase_counts(rows)  # type: ignore[arg-type]
            columns = np.flatnonzero(title | abstract)
            return self._unit_vector(columns, title[columns], abstract[columns])
        # A phrase that can overlap itself ("a b a") counts as str.count does, without
        # overlaps; only papers holding every stem can hold it.
        present = self._words
        candidates = present.indices[present.indptr[rows[0]] : present.indptr[rows[0] + 1]]  # type: ignore[index]
        for row in rows[1:]:
            posting = present.indices[present.indptr[row] : present.indptr[row + 1]]  # type: ignore[index]
            candidates = np.intersect1d(candidates, posting, assume_unique=True)
        needle = " " + "  ".join(key) + " "
        counts = [
            (col, self._title_text[col].count(needle), self._abstract_text[col].count(needle))
            for col in candidates.tolist()
        ]
        counts = [c for c in counts if c[1] or c[2]]
        return self._unit_vector(
            np.array([c[0] for c in counts], dtype=np.int64),
            np.array([c[1] for c in counts], dtype=np.int64),
            np.array([c[2] for c in counts], dtype=np.int64),
        )

    def _unit_vector(
        self, columns: np.ndarray, tf_title: np.ndarray, tf_abstract: np.ndarray
    ) -> _UnitVector:
        """A unit's BM25F values from its counts in the papers ``columns`` (ascending)."""
        effective = self.settings.title_weight * tf_title.astype(float) + self._abstract_scale[
            columns
        ] * tf_abstract.astype(float)
        idf = float(self._idf_of(len(columns)))
        return _UnitVector(
            columns.astype(np.int64), _on_value_grid(idf * self._saturate(effective))
        )

    def _near_counts(self, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Per paper, in its title and in its abstract: occurrences of the first stem with
        every other stem within ``NEAR_WINDOW`` words."""
        title, abstract = self._occurrences_index()
        return title.near(rows, self._n), abstract.near(rows, self._n)

    def _phrase_counts(self, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Per paper, in its title and in its abstract: occurrences of the stems one after
        the other."""
        title, abstract = self._occurrences_index()
        return title.consecutive(rows, self._n), abstract.consecutive(rows, self._n)

    def _occurrences_index(self) -> tuple[_Occurrences, _Occurrences]:
        """Built the first time a unit needs it (called under the lock)."""
        if self._occurrences is None:
            self._occurrences = (
                _Occurrences.of(self._title_stems, self._vocabulary),
                _Occurrences.of(self._abstract_stems, self._vocabulary),
            )
        return self._occurrences

    def _unit_matrix(self, unit_ids: Sequence[int], presence: bool = False) -> sp.csr_matrix:
        """Stacked unit vectors (values, or 1 where present); sorted columns."""
        offsets, columns, values = self._all_units()
        ids = np.asarray(unit_ids, dtype=np.int64)
        starts = offsets[ids]
        counts = offsets[ids + 1] - starts
        indptr = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        at = np.repeat(starts - indptr[:-1], counts) + np.arange(indptr[-1])
        return sp.csr_matrix(
            (np.ones(len(at)) if presence else values[at], columns[at], indptr),
            shape=(len(ids), self._n),
        )

    def _all_units(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every unit registered so far, one after the other: (offsets, columns, values), unit
        u's at ``offsets[u]:offsets[u + 1]``. Extended when units were registered since: a
        chunk gathers its units from it with a few array operations instead of a Python loop
        over thousands of them."""
        with self._registering:
            flat = self._flat_units
            done = len(flat[0]) - 1
            if done < len(self._unit_vectors):
                new = self._unit_vectors[done:]
                lengths = np.array([len(v.columns) for v in new], dtype=np.int64)
                flat = self._flat_units = (
                    np.concatenate((flat[0], flat[0][-1] + np.cumsum(lengths))),
                    np.concatenate((flat[1], *(v.columns for v in new))),
                    np.concatenate((flat[2], *(v.values for v in new))),
                )
            return flat

    def _exclude_id(self, text: str) -> int | None:
        """The unit an exclude term vetoes by: its word, or its stems as a phrase."""
        if text not in self._excludes:
            key = term_key(text)
            self._excludes[text] = (
                self._unit_id("word" if len(key) == 1 else "phrase", key) if key else None
            )
        return self._excludes[text]

    # -- the expansion's neighbours --------------------------------------------------------

    def _lexical_neighbours(self) -> sp.csr_matrix:
        """paper x paper: how much each paper's distinctive words find the others.

        A paper's distinctive words are its ``EXPANSION_WORDS`` stems of highest tf-idf
        (title words counted ``title_weight`` times, over the paper's length, times the square
        root of the idf), leaving out stop words, numbers, words under three letters and
        words no other paper uses; their weights sum to 1. Row d is the BM25F score of every
        paper for that weighted bag, keeping the ``NEIGHBOURS`` best: pseudo-relevance
        feedback (RM3-like) from paper d, computed once a day.
        """
        with self._neighbours_lock:
            if self._lexical is None:
                self._lexical = _top_per_row(self._distinctive_locked() @ self._words, NEIGHBOURS)
            return self._lexical

    def _lexical_for_products(self) -> sp.csr_matrix | np.ndarray:
        """``_lexical_neighbours`` made dense once where it is small enough (``_DENSE_CELLS``:
        2,000 papers take 32 MB), for the per-chunk product (see ``_product_into``)."""
        lexical = self._lexical_neighbours()
        if self._n * self._n > _DENSE_CELLS:
            return lexical
        with self._neighbours_lock:
            if self._lexical_dense is None:
                self._lexical_dense = lexical.toarray()
            return self._lexical_dense

    def _distinctive_matrix(self) -> sp.csr_matrix:
        """paper x stem: each paper's distinctive words and their weights (summing to 1)."""
        with self._neighbours_lock:
            return self._distinctive_locked()

    def _distinctive_locked(self) -> sp.csr_matrix:
        if self._distinctive is None:
            self._distinctive = self._compute_distinctive()
        return self._distinctive

    def _compute_distinctive(self) -> sp.csr_matrix:
        counts = (self._title_tf * self.settings.title_weight + self._abstract_tf).T.tocsr()
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        lengths[lengths == 0] = 1.0
        scores = sp.diags(1.0 / lengths) @ counts @ sp.diags(np.sqrt(self._idf))
        scores = scores.tocsr()
        usable = np.array(
            [
                self._df[row] >= 2 and _distinctive_stem(stem)
                for row, stem in enumerate(self._stem_of)
            ],
            dtype=bool,
        )
        scores = scores @ sp.diags(usable.astype(float))
        top = _top_per_row(scores.tocsr(), EXPANSION_WORDS)
        sums = np.asarray(top.sum(axis=1)).ravel()
        sums[sums == 0] = 1.0
        return (sp.diags(1.0 / sums) @ top).tocsr()

    # -- small caches ----------------------------------------------------------------------

    def _reason(self, kind: str, label: str) -> Reason:
        """A shared Reason: 100,000 subscribers mostly repeat the same few thousand."""
        found = self._reasons.get((kind, label))
        if found is None:
            found = self._reasons.setdefault((kind, label), Reason(kind, label))  # type: ignore[arg-type]
        return found

    def _author_key(self, name: str) -> tuple[str, str]:
        found = self._author_keys.get(name)
        if found is None:
            found = self._author_keys[name] = author_key(name)
        return found


def _distinctive_stem(stem: str) -> bool:
    return (
        len(stem) >= _MIN_WORD_CHARS
        and not stem.isdigit()
        and any(ch.isalpha() for ch in stem)
        and stem not in STOP_STEMS
    )


@dataclass(frozen=True, slots=True)
class _Occurrences:
    """Where each stem occurs in one field of every paper: a stem's occurrences are keys
    ``paper * stride + position``, ascending, so the positions near one are a range of keys
    (``stride`` leaves a window's room between papers)."""

    keys: np.ndarray  # grouped by stem (vocabulary row), ascending within each
    starts: np.ndarray  # stem row r's keys are keys[starts[r] : starts[r + 1]]
    stride: int

    @classmethod
    def of(cls, stems: list[list[str]], vocabulary: dict[str, int]) -> _Occurrences:
        lengths = np.array([len(tokens) for tokens in stems], dtype=np.int64)
        total = int(lengths.sum())
        rows = np.fromiter(
            (vocabulary[stem] for tokens in stems for stem in tokens), dtype=np.int64, count=total
        )
        stride = int(lengths.max(initial=0)) + NEAR_WINDOW + 1
        before = np.cumsum(lengths) - lengths
        positions = np.arange(total) - np.repeat(before, lengths)
        keys = np.repeat(np.arange(len(stems), dtype=np.int64), lengths) * stride + positions
        order = np.lexsort((keys, rows))
        starts = np.searchsorted(rows[order], np.arange(len(vocabulary) + 1))
        return cls(keys[order], starts, stride)

    def near(self, rows: list[int], papers: int) -> np.ndarray:
        """Per paper, occurrences of stem ``rows[0]`` with each other stem of ``rows``
        within ``NEAR_WINDOW`` positions (on either side)."""
        first = self.keys[self.starts[rows[0]] : self.starts[rows[0] + 1]]
        close = np.ones(len(first), dtype=bool)
        for row in rows[1:]:
            other = self.keys[self.starts[row] : self.starts[row + 1]]
            if not len(other):
                return np.zeros(papers, dtype=np.int64)
            # The first occurrence at or after first - window is the nearest candidate.
            at = np.minimum(np.searchsorted(other, first - NEAR_WINDOW), len(other) - 1)
            close &= np.abs(other[at] - first) <= NEAR_WINDOW
        return np.bincount(first[close] // self.stride, minlength=papers)

    def consecutive(self, rows: list[int], papers: int) -> np.ndarray:
        """Per paper, occurrences of the stems ``rows`` one right after the other (at most
        ``NEAR_WINDOW + 1`` of them: ``stride`` keeps that within one paper)."""
        first = self.keys[self.starts[rows[0]] : self.starts[rows[0] + 1]]
        whole = np.ones(len(first), dtype=bool)
        for offset, row in enumerate(rows[1:], start=1):
            other = self.keys[self.starts[row] : self.starts[row + 1]]
            if not len(other):
                return np.zeros(papers, dtype=np.int64)
            wanted = first + offset
            at = np.minimum(np.searchsorted(other, wanted), len(other) - 1)
            whole &= other[at] == wanted
        return np.bincount(first[whole] // self.stride, minlength=papers)


def _overlaps_itself(key: tuple[str, ...]) -> bool:
    """Whether a phrase's end can begin it again ("a b a"): two such occurrences can
    share words."""
    return any(key[size:] == key[: len(key) - size] for size in range(1, len(key)))


def _top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """The ``k`` largest positive entries of each row (ties: lower column), others dropped."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    m, n = matrix.shape
    if matrix.nnz * 4 > m * n:
        return _top_per_dense_row(matrix, min(k, n))
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    keep_rows: list[np.ndarray] = []
    keep_cols: list[np.ndarray] = []
    keep_vals: list[np.ndarray] = []
    for row in range(m):
        start, end = indptr[row], indptr[row + 1]
        values, columns = data[start:end], indices[start:end]
        positive = values > 0
        values, columns = values[positive], columns[positive]
        if len(values) > k:
            chosen = np.lexsort((columns, -values))[:k]
            values, columns = values[chosen], columns[chosen]
        keep_rows.append(np.full(len(values), row, dtype=np.int64))
        keep_cols.append(columns.astype(np.int64))
        keep_vals.append(values)
    return _csr(matrix.shape, keep_rows, keep_cols, keep_vals)


def _top_per_dense_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """``_top_per_row`` for a mostly full matrix (the expansion's paper x paper scores): a
    block of rows at a time made dense (about 16 MB), where one selection per block beats a
    sort per row (0.5 -> 0.1 s for 2,000 papers)."""
    m, n = matrix.shape
    step = max(1, _TOP_BLOCK_CELLS // max(n, 1))
    keep_rows: list[np.ndarray] = []
    keep_cols: list[np.ndarray] = []
    keep_vals: list[np.ndarray] = []
    for start in range(0, m, step):
        top, values = _largest_k(matrix[start : start + step].toarray(), k)
        positive = values > 0
        keep_rows.append(np.nonzero(positive)[0] + start)
        keep_cols.append(top[positive])
        keep_vals.append(values[positive])
    return _csr(matrix.shape, keep_rows, keep_cols, keep_vals)


def _csr(
    shape: tuple[int, int], rows: list[np.ndarray], cols: list[np.ndarray], vals: list[np.ndarray]
) -> sp.csr_matrix:
    if not rows:
        return sp.csr_matrix(shape)
    result = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape
    )
    result.sort_indices()
    return result
