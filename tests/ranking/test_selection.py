"""The ranking's numeric helpers against plain computation: the selections (the k best per
row, ties to the lower column) on random matrices full of ties (values on a few levels,
zeros, infinities), the products, dense or sparse, bit for bit, and the count of words near
each other."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from digest.ranking import parts, prepared
from digest.ranking.parts import _largest_k, _product_into, _smallest_k
from digest.ranking.prepared import _Occurrences, _overlaps_itself, _top_per_row
from digest.ranking.query import NEAR_WINDOW


def _matrices(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    found = []
    for number in range(150):
        # A third wide enough for the threshold path (n >= 16 k), the rest for the partition.
        wide = number % 3 == 0
        m = int(rng.integers(1, 30))
        n = int(rng.integers(160, 700) if wide else rng.integers(1, 80))
        levels = rng.integers(-2, int(rng.integers(1, 6)), size=(m, n)).astype(float)
        levels[rng.random((m, n)) < rng.random()] = 0.0  # sparse rows and full ones
        found.append(levels)
    return found


def _best_first(row: np.ndarray) -> list[int]:
    return sorted(range(len(row)), key=lambda col: (-row[col], col))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_largest_k_matches_a_sort_wherever_the_value_counts(seed: int) -> None:
    for values in _matrices(seed):
        for k in (1, 2, 5, 10, values.shape[1], values.shape[1] + 3):
            top, top_values = _largest_k(values, k)
            assert top.shape == (values.shape[0], min(k, values.shape[1]))
            for i, row in enumerate(values):
                expected = _best_first(row)[: top.shape[1]]
                assert np.array_equal(top_values[i], row[expected])
                # Entries at 0 or below are "none": callers drop them, so their order is free.
                positive = top_values[i] > 0
                assert top[i][positive].tolist() == [c for c in expected if row[c] > 0]


@pytest.mark.parametrize("seed", [4, 5])
def test_smallest_k_matches_a_sort_wherever_the_cost_is_finite(seed: int) -> None:
    for levels in _matrices(seed):
        cost = np.where(levels > 0, np.inf, -levels)  # many ties, a share failed (inf)
        for k in (1, 3, 10, cost.shape[1]):
            top, top_cost = _smallest_k(cost, k)
            for i, row in enumerate(cost):
                expected = sorted(range(len(row)), key=lambda col: (row[col], col))[: top.shape[1]]
                assert np.array_equal(top_cost[i], row[expected])
                finite = np.isfinite(top_cost[i])
                assert top[i][finite].tolist() == [c for c in expected if np.isfinite(row[c])]


@pytest.mark.parametrize(("seed", "block_cells"), [(6, 2_000_000), (7, 50)])
def test_top_per_row_keeps_the_k_largest_positive_entries_sparse_or_dense(
    seed: int, block_cells: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small blocks: a dense matrix is taken a few rows at a time, as a large day's is.
    monkeypatch.setattr(prepared, "_TOP_BLOCK_CELLS", block_cells)
    dense_seen = sparse_seen = 0
    for values in _matrices(seed):
        matrix = sp.csr_matrix(values)
        m, n = values.shape
        dense_seen += matrix.nnz * 4 > m * n
        sparse_seen += matrix.nnz * 4 <= m * n
        for k in (1, 4, 20):
            kept = _top_per_row(matrix, k)
            expected = np.zeros_like(values)
            for i, row in enumerate(values):
                for col in [c for c in _best_first(row) if row[c] > 0][:k]:
                    expected[i, col] = row[col]
            assert kept.has_sorted_indices
            assert np.array_equal(kept.toarray(), expected)
    assert dense_seen and sparse_seen  # both ways were taken


@pytest.mark.parametrize("dense_cells", [0, 8_000_000])
def test_products_give_the_same_bits_sparse_or_dense(
    dense_cells: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Weights that are not on any grid (the expansion's shares are not): any other order of
    # the additions would change the last bits somewhere in these.
    monkeypatch.setattr(parts, "_DENSE_CELLS", dense_cells)
    rng = np.random.default_rng(8)
    for _ in range(40):
        m, inner, n = (int(x) for x in rng.integers(1, 60, size=3))
        left = sp.random(m, inner, density=rng.random(), random_state=rng, format="csr")
        right = sp.random(inner, n, density=rng.random(), random_state=rng, format="csr")
        expected = np.zeros((m, n))
        for i in range(m):  # each row's products added in the order of its entries
            for at in range(left.indptr[i], left.indptr[i + 1]):
                k, weight = left.indices[at], left.data[at]
                for bt in range(right.indptr[k], right.indptr[k + 1]):
                    expected[i, right.indices[bt]] += weight * right.data[bt]
        for given in (right, right.toarray()):
            out = np.full((m, n), np.nan)
            _product_into(left, given, out)
            assert np.array_equal(out, expected)


def _random_fields(
    rng: np.random.Generator, stems: int
) -> tuple[list[str], list[list[str]], dict[str, int], _Occurrences]:
    """A few papers' fields of 0-39 stems drawn from a small alphabet (so stems repeat and
    meet), and their occurrence index."""
    alphabet = [f"w{i}" for i in range(int(rng.integers(2, stems)))]
    fields = [
        [str(rng.choice(alphabet)) for _ in range(int(rng.integers(0, 40)))]
        for _ in range(int(rng.integers(1, 12)))
    ]
    vocabulary = {stem: row for row, stem in enumerate(alphabet)}
    return alphabet, fields, vocabulary, _Occurrences.of(fields, vocabulary)


def test_words_near_each_other_are_counted_as_a_plain_scan_counts_them() -> None:
    rng = np.random.default_rng(10)
    window = NEAR_WINDOW
    for _ in range(30):
        alphabet, fields, vocabulary, found = _random_fields(rng, 9)
        for _ in range(20):
            key = [str(rng.choice(alphabet)) for _ in range(int(rng.integers(2, 5)))]
            expected = [
                sum(
                    1
                    for at, stem in enumerate(tokens)
                    if stem == key[0]
                    and all(
                        any(o == other and abs(p - at) <= window for p, o in enumerate(tokens))
                        for other in key[1:]
                    )
                )
                for tokens in fields
            ]
            counts = found.near([vocabulary[stem] for stem in key], len(fields))
            assert counts.tolist() == expected


def test_a_phrase_is_counted_as_str_count_counts_it_unless_it_overlaps_itself() -> None:
    rng = np.random.default_rng(11)
    compared = 0
    for _ in range(30):
        alphabet, fields, vocabulary, found = _random_fields(rng, 6)
        for _ in range(30):
            key = tuple(str(rng.choice(alphabet)) for _ in range(int(rng.integers(2, 5))))
            if _overlaps_itself(key):
                continue
            needle = " " + "  ".join(key) + " "
            expected = [
                (" " + "  ".join(tokens) + " ").count(needle) if tokens else 0 for tokens in fields
            ]
            counts = found.consecutive([vocabulary[stem] for stem in key], len(fields))
            assert counts.tolist() == expected
            compared += 1
    assert compared > 500
    # Why those are left to str.count: "a b a" twice in "a b a b a" shares a word.
    assert _overlaps_itself(("a", "b", "a")) and _overlaps_itself(("a", "a"))
    assert not _overlaps_itself(("a", "b", "b")) and not _overlaps_itself(("a", "b"))
    found = _Occurrences.of([["a", "b", "a", "b", "a"]], {"a": 0, "b": 1})
    assert found.consecutive([0, 1, 0], 1).tolist() == [2]
    assert " a  b  a  b  a ".count(" a  b  a ") == 1
