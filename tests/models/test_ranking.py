"""``top_k``, the ranking every model's ``recommend`` and the evaluation use, against the
definition written as a loop: scores descending, ties to the lower item index, ``-inf`` as -1."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models.base import TOP_K_CHUNK, binary_rows, top_k


def naive_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    items, values = [], []
    for row in scores:  # the definition, not a hot path
        order = sorted(range(len(row)), key=lambda i: (-row[i], i))[:k]
        items.append([i if np.isfinite(row[i]) else -1 for i in order])
        values.append([row[i] for i in order])
    return np.array(items), np.array(values, dtype=np.float32)


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_top_k_is_the_definition_with_ties_and_excluded_items(k):
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 6, size=(50, 40)).astype(np.float32)  # ties everywhere
    scores[rng.random(scores.shape) < 0.3] = -np.inf  # excluded items
    scores[7, 5:] = -np.inf  # a row with fewer than k items left
    scores[8] = rng.standard_normal(40)  # a row without ties
    items, values = top_k(scores, k)
    expected_items, expected_values = naive_top_k(scores, k)
    np.testing.assert_array_equal(items, expected_items)
    np.testing.assert_array_equal(values, expected_values)
    assert items.dtype == np.int64 and values.dtype == np.float32


@pytest.mark.parametrize("k", [1, 5, 20])
def test_top_k_over_chunks_of_a_large_catalogue_is_the_definition(k):
    # rows longer than (k + 1) chunks take the chunked path (TOP_K_CHUNK items a chunk, and a
    # short last one): ties inside and across chunks, a tie at the k-th place, a winner in the
    # short last chunk, whole chunks excluded, and a row with fewer than k items left
    n_items = (k + 3) * TOP_K_CHUNK + 17
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 50, size=(30, n_items)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[0] = rng.standard_normal(n_items)
    scores[1, -3:] = 100.0  # the best items in the short last chunk
    scores[2, : 5 * TOP_K_CHUNK] = -np.inf  # whole chunks excluded
    scores[3] = -np.inf
    scores[3, :k // 2] = 1.0  # fewer than k items left
    scores[4] = 0.0
    scores[4, rng.choice(n_items, k - 1, replace=False)] = 1.0  # the k-th place is a tie of many
    items, values = top_k(scores, k)
    expected_items, expected_values = naive_top_k(scores, k)
    np.testing.assert_array_equal(items, expected_items)
    np.testing.assert_array_equal(values, expected_values)


def test_binary_rows_are_ones_where_a_value_is_positive_even_when_stored_twice():
    # item 0 of row 0 is stored twice (1 + 1), item 2 holds 4, row 1's item 1 an explicit 0
    matrix = sp.csr_matrix(([1.0, 1.0, 4.0, 0.0], [0, 0, 2, 1], [0, 3, 4]), shape=(2, 3))
    assert matrix.toarray()[0, 0] == 2  # stored twice, as built
    rows = binary_rows(matrix)
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows.toarray(), [[1, 0, 1], [0, 0, 0]])
    assert rows.nnz == 2
