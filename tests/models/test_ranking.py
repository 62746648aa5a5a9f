"""``top_k``, the ranking every model's ``recommend`` and the evaluation use, against the
definition written as a loop: scores descending, ties to the lower item index, ``-inf`` as -1."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.models.base import top_k


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
