"""What ranking works with: the request, the per-row indexes, the dense workspace, and
the numeric helpers (saturation, selections, lookups, top-k). Pure."""

from __future__ import annotations

import gc
import logging
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import scipy.sparse as sp

from digest.domain.items import Reason
from digest.domain.profiles import Profile

_log = logging.getLogger(__name__)

MAX_LIMIT = 50
# Dense working arrays per chunk are (rows x papers); this many cells keeps each near 16 MB.
_CHUNK_CELLS = 2000000
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
# Unit values and term weights are rounded to these binary grids, so a product is a multiple
# of 2**-32 and a row's sum of a few hundred of them (each below ~2**42 grid steps) is exact in
# float64 in any order: a row scores the same alone or in any batch, without sorting its
# terms. The rounding moves a value by less than 4e-6 and a weight by less than 7e-5.
_VALUE_GRID = 2.0**18
_WEIGHT_GRID = 2.0**14
# A sparse right-hand side of a product is made dense up to this many cells (64 MB): scipy's
# sparse x dense product is about twice as fast as sparse x sparse, whose result is mostly
# full here anyway.
_DENSE_CELLS = 8_000_000
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
class _UnitVector:
    """One unit's matches against every paper of the day, computed once per day."""

    columns: np.ndarray  # papers (column indexes) where the unit occurs, ascending
    values: np.ndarray  # its BM25F value there: idf * saturated field-weighted frequency


@dataclass(slots=True)
class _Row:
    """One request turned into indexes: what its chunk's matrices are built from."""

    # The reader's terms that count, in order (include terms, the description, then learned
    # words from ``learned_from`` on), as term ids (see Ranker._term) and weights; learned
    # weights may be < 0. Ranker._wanted turns a chunk's terms into unit weights.
    term_ids: list[int]
    term_weights: list[float]
    learned_from: int
    excludes: list[int]  # unit ids
    authors: list[tuple[int, float]]  # (index into the day's author keys, weight)
    author_keys: dict[tuple[str, str], float]  # followed or learned author -> weight
    categories: list[int]  # indexes into the day's category tokens
    chosen_categories: tuple[str, ...]
    since: float  # POSIX seconds; -inf for "all"
    excluded_columns: list[int]
    limit: int  # 0 for a profile with no topics: its list comes from the trending order
    also_trending: bool
    semantic: list[tuple[int, Reason]]  # (profile text id, its reason), in profile order


@dataclass(frozen=True, slots=True)
class _TermArrays:
    """A snapshot of :class:`_TermTable` as arrays, for a chunk's vectorised work."""

    first: np.ndarray  # term id -> its first entry
    count: np.ndarray  # term id -> its number of entries
    unit: np.ndarray  # entry -> unit id
    share: np.ndarray  # entry -> the unit's share of the term's weight
    group: np.ndarray  # entry -> its group number: a pick names one reason per group
    phrase: np.ndarray  # entry -> its reason names a phrase
    surfaced: np.ndarray  # entry -> it has words to highlight
    # Object arrays, so a chunk's picks take theirs with one fancy index, not a Python loop.
    reason: np.ndarray  # entry -> its reason
    surface: np.ndarray  # entry -> the words it highlights ("" for none)


@dataclass(frozen=True, slots=True)
class _Wanted:
    """A chunk's unit weights (see ``Ranker._wanted``)."""

    matrix: sp.csr_matrix  # row x unit: weights, each row's units in its order
    unit_ids: np.ndarray  # the matrix's columns' unit ids, ascending
    entries: np.ndarray  # per stored weight: the term entry it counts under
    expands: np.ndarray  # per row: has a positive weight (words of its own to expand from)
    table: _TermArrays  # the term entries (reasons, highlights, groups) as of this chunk


class _TermTable:
    """The terms met so far today (see ``Ranker._term``): each term id owns a run of entries,
    one per unit the term matches by. Grown and read under ``Prepared._terms_lock``."""

    def __init__(self) -> None:
        self.first: list[int] = []
        self.count: list[int] = []
        self.unit: list[int] = []
        self.share: list[float] = []
        self.group: list[int] = []
        self.phrase: list[bool] = []
        self.reason: list[Reason] = []
        self.surface: list[str] = []
        self._arrays: _TermArrays | None = None

    def add(self, entries: Sequence[tuple[int, float, int, Reason, str]]) -> int:
        """A new term of ``entries`` (unit id, share, group number, reason, highlight): its id."""
        self.first.append(len(self.unit))
        self.count.append(len(entries))
        for unit, share, group, reason, surface in entries:
            self.unit.append(unit)
            self.share.append(share)
            self.group.append(group)
            self.phrase.append(reason.kind == "phrase")
            self.reason.append(reason)
            self.surface.append(surface)
        return len(self.first) - 1

    def arrays(self) -> _TermArrays:
        """The table as arrays, made again only when terms were added since."""
        arrays = self._arrays
        if arrays is None or len(arrays.first) != len(self.first):
            surface = np.fromiter(self.surface, dtype=object, count=len(self.surface))
            arrays = self._arrays = _TermArrays(
                np.array(self.first, dtype=np.int64),
                np.array(self.count, dtype=np.int64),
                np.array(self.unit, dtype=np.int64),
                np.array(self.share, dtype=float),
                np.array(self.group, dtype=np.int64),
                np.array(self.phrase, dtype=bool),
                surface.astype(bool),  # "" highlights nothing
                np.fromiter(self.reason, dtype=object, count=len(self.reason)),
                surface,
            )
        return arrays


class _Workspace:
    """Dense (rows x papers) arrays reused by every chunk of one ``rank`` call.

    Reusing them keeps memory flat and spares the page faults of fresh arrays per chunk.
    """

    def __init__(self, rows: int, papers: int) -> None:
        self.relevance = np.zeros((rows, papers))  # keyword relevance, then the blend
        self.first = np.zeros((rows, papers))  # what chooses the papers the expansion uses
        self.expansion = np.zeros((rows, papers))  # by words, then by meaning
        self.cost = np.empty((rows, papers))  # -score, +inf where failed
        self.blocked = np.empty((rows, papers), dtype=bool)  # not a candidate for this row
        self.failed = np.empty((rows, papers), dtype=bool)  # blocked or below the cut
        self.met = np.empty((rows, papers), dtype=bool)  # a followed author or category
        self._shape = (rows, papers)
        self._closeness: np.ndarray | None = None  # only when semantic matching is on
        self._meaning: np.ndarray | None = None
        self._scratch = np.zeros(0)  # all zeros between uses: see dense()

    @property
    def closeness(self) -> np.ndarray:
        """Best cosine of each row's profile texts to each paper (semantic matching only)."""
        if self._closeness is None:
            self._closeness = np.empty(self._shape)
        return self._closeness

    @property
    def meaning(self) -> np.ndarray:
        """Closeness in meaning to each row's best papers (semantic matching only)."""
        if self._meaning is None:
            self._meaning = np.empty(self._shape)
        return self._meaning

    @contextmanager
    def dense(self, matrix: sp.csr_matrix) -> Iterator[np.ndarray]:
        """``matrix`` (without duplicate entries) as a dense array, for the time of the block.

        It is written into this workspace's scratch, which stays all zeros between uses: only
        the matrix's entries are set, and set back to 0 after. Far cheaper than a fresh array
        of units x papers zeros per chunk (``toarray``), which was half of the product's time.
        """
        rows, cols = matrix.shape
        if self._scratch.size < rows * cols:
            self._scratch = np.zeros(rows * cols)
        view = self._scratch[: rows * cols].reshape(rows, cols)
        at = (np.repeat(np.arange(rows), np.diff(matrix.indptr)), matrix.indices)
        view[at] = matrix.data
        try:
            yield view
        finally:
            view[at] = 0.0


def _on_value_grid(values: np.ndarray) -> np.ndarray:
    return np.rint(values * _VALUE_GRID) / _VALUE_GRID


def _on_weight_grid(weight: float) -> float:
    return round(weight * _WEIGHT_GRID) / _WEIGHT_GRID


def _timestamp(moment: datetime | None) -> float:
    if moment is None:
        return -math.inf
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _relative(values: np.ndarray, floor: float, best: np.ndarray) -> np.ndarray:
    """Per row, clip((values - floor) / (best - floor), 0, 1) in place: 1 at the row's best,
    0 at ``floor`` and below; a row whose best is not above ``floor`` becomes all 0."""
    span = best - floor
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(span > 0, 1.0 / span, 0.0)
    values -= floor
    values *= scale[:, None]
    np.clip(values, 0.0, 1.0, out=values)
    return values


def _row_max(values: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Each row's largest value (over ``where`` when given); 0 for an empty row."""
    if values.shape[1] == 0:
        return np.zeros(values.shape[0])
    if where is None:
        return values.max(axis=1)
    return np.max(values, axis=1, where=where, initial=-np.inf)


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
def gc_paused(results_kept: bool = False) -> Iterator[None]:
    """No cyclic garbage collection while a batch runs.

    A batch allocates millions of small tracked objects (items, reason tuples) that all stay
    alive; the collector would re-scan the growing heap again and again for nothing (it made
    100,000 subscribers take 1.7x as long). Restored afterwards; nothing here forms cycles.

    ``results_kept``: the caller keeps what the batch made. Everything made meanwhile is
    then counted as old before collection resumes (``gc.freeze`` then ``gc.unfreeze`` moves
    it to the oldest generation without looking at it), rather than scanned at once by a
    pass over the young generation, which held every one of those objects: 0.55 s for
    100,000 readers' 1,059,138 picks. A later full collection still looks at them, and
    collects any cycles among them then. Left alone where something else froze objects.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if results_kept and not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def _first(pair: tuple[float, Reason]) -> float:
    return pair[0]


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


def _product_into(
    left: sp.csr_matrix,
    right: sp.csr_matrix | np.ndarray,
    out: np.ndarray,
    work: _Workspace | None = None,
) -> None:
    """``left @ right`` written into the dense ``out``; ``right`` made dense first where it is
    small enough (``_DENSE_CELLS``), in ``work``'s scratch when given. The same sums either
    way, bit for bit: both add each row's products in the order of ``left``'s entries, and a
    dense zero adds nothing."""
    if isinstance(right, np.ndarray):
        np.copyto(out, left @ right)
    elif right.shape[0] * right.shape[1] > _DENSE_CELLS:
        (left @ right).toarray(out=out)
    elif work is not None:
        with work.dense(right) as dense:
            np.copyto(out, left @ dense)
    else:
        np.copyto(out, left @ right.toarray())


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


def _largest_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k columns of largest value (ties: lower column first), and the values;
    values of 0 and below, which callers drop, may come in any order (:func:`_best_k`)."""
    return _best_k(values, k, largest=True)


def _smallest_k(cost: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k columns of least cost (ties: lower column first), and their costs;
    infinite costs, which callers drop, may come in any order (:func:`_best_k`)."""
    return _best_k(cost, k, largest=False)


def _best_k(values: np.ndarray, k: int, *, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """The k best per row of a wide matrix, from a threshold instead of a selection.

    A row's columns are cut into blocks of ``n // (8k)``; the k-th best of the blocks' best
    values is a threshold that at least k values reach (those k blocks' best), and that few
    others do. Those are found with one comparison over the matrix and sorted exactly
    (value, then column), so ties at the boundary need no second pass. 2.5x faster than an
    ``argpartition`` of every row on the ranking's 1,000 x 2,000 chunks (which sorts index
    arrays, not values). A row whose threshold is one callers drop (0 or below, infinite
    costs) would make every such value a candidate: those rows take the partition.
    """
    m, n = values.shape
    exact = _partitioned_largest_k if largest else _partitioned_smallest_k
    if k <= 0 or m == 0 or n < 16 * k:
        return exact(values, k)
    starts = np.arange(0, n, max(1, n // (8 * k)))
    blocks = len(starts)
    if largest:
        best = np.maximum.reduceat(values, starts, axis=1)
        threshold = np.partition(best, blocks - k, axis=1)[:, blocks - k]
        fast = threshold > 0
        candidates = values >= np.where(fast, threshold, np.inf)[:, None]
    else:
        best = np.minimum.reduceat(values, starts, axis=1)
        threshold = np.partition(best, k - 1, axis=1)[:, k - 1]
        fast = np.isfinite(threshold)
        candidates = values <= np.where(fast, threshold, -np.inf)[:, None]
    # One flat scan, then row and column: nonzero's two-dimensional form takes ten times as
    # long on a chunk's 1,000 x 2,000 (the same indexes, in the same row-major order).
    rows, cols = np.divmod(np.flatnonzero(candidates), n)
    del candidates
    kept = fast[rows]  # an infinite value in a row left to the partition
    if not kept.all():
        rows, cols = rows[kept], cols[kept]
    found = values[rows, cols]
    # The scan gives each row's columns in ascending order, and lexsort is stable: ties stay
    # lower column first.
    order = np.lexsort((-found if largest else found, rows))
    cols, found = cols[order], found[order]
    counts = np.bincount(rows, minlength=m)
    at = (np.cumsum(counts) - counts)[fast][:, None] + np.arange(k)
    top = np.zeros((m, k), dtype=np.int64)
    top_values = np.zeros((m, k), dtype=values.dtype)
    top[fast], top_values[fast] = cols[at], found[at]
    slow = np.flatnonzero(~fast)
    if len(slow):
        top[slow], top_values[slow] = exact(values[slow], k)
    return top, top_values


def _partitioned_largest_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k columns of largest value (ties: lower column first), and the values;
    values of 0 and below, which callers drop, may come in any order.

    argpartition finds them in linear time but breaks ties at the boundary arbitrarily. Asked
    for the (k+1)-th largest alone, it puts that one in place with the k largest after it
    (one selection; asking for two places costs two): a row where it equals the smallest
    chosen value (and is above 0) is redone exactly over the values that tie or beat it.
    """
    m, n = values.shape
    if k <= 0:
        return np.zeros((m, 0), dtype=np.int64), np.zeros((m, 0), dtype=values.dtype)
    if k < n:
        full = np.argpartition(values, n - k - 1, axis=1)
        part = full[:, n - k :]
        below = np.take_along_axis(values, full[:, n - k - 1 : n - k], axis=1)[:, 0]
    else:
        part = np.broadcast_to(np.arange(n), (m, n)).copy()
        below = None
    chosen = np.take_along_axis(values, part, axis=1)
    order = np.lexsort((part, -chosen), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    top_values = np.take_along_axis(chosen, order, axis=1)
    if below is not None:
        worst = top_values[:, -1]
        for i in np.flatnonzero((worst > 0) & (below == worst)):
            tied = np.flatnonzero(values[i] >= worst[i])  # ascending columns
            exact = tied[np.lexsort((tied, -values[i, tied]))[:k]]
            top[i], top_values[i] = exact, values[i, exact]
    return top, top_values


def _partitioned_smallest_k(cost: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k columns of least cost (ties: lower column first), and their costs;
    infinite costs, which callers drop, may come in any order.

    As ``_partitioned_largest_k``: one selection of the (k+1)-th cheapest; a row where it ties
    with the dearest chosen (and is finite) is redone exactly over the costs that tie or beat it.
    """
    m, n = cost.shape
    if k <= 0:
        return np.zeros((m, 0), dtype=np.int64), np.zeros((m, 0), dtype=cost.dtype)
    if k < n:
        full = np.argpartition(cost, k, axis=1)
        part = full[:, :k]
        above = np.take_along_axis(cost, full[:, k : k + 1], axis=1)[:, 0]
    else:
        part = np.broadcast_to(np.arange(n), (m, n)).copy()
        above = None
    values = np.take_along_axis(cost, part, axis=1)
    order = np.lexsort((part, values), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    top_cost = np.take_along_axis(values, order, axis=1)
    if above is not None:
        worst = top_cost[:, -1]
        for i in np.flatnonzero(np.isfinite(worst) & (above == worst)):
            tied = np.flatnonzero(cost[i] <= worst[i])  # ascending columns
            exact = tied[np.lexsort((tied, cost[i, tied]))[:k]]
            top[i], top_cost[i] = exact, cost[i, exact]
    return top, top_cost
