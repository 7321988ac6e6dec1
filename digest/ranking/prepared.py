"""The per-day preparation a ranker does once for all subscribers."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
import scipy.sparse as sp

from digest.config import RankingSettings
from digest.domain.analysis import author_key, stems, term_key
from digest.domain.items import PaperCard, Reason
from digest.ranking.parts import (
    _COMMON_SHARE,
    _NEW,
    _PSEUDO_PAPERS,
    RankRequest,
    _log,
    _on_grid,
    _saturation,
    _TermVector,
    _timestamp,
)
from digest.ranking.semantic import ProfileText, SemanticMatch


class Prepared:
    """The day's papers prepared once: tokens, stems, term vectors, authors, categories,
    the prior and (optionally) vectors. :class:`digest.ranking.ranker.Ranker` ranks with it."""

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
