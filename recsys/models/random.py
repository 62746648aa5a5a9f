"""Uniform random scores: the floor every model must beat."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.models.base import Recommender


class RandomRecommender(Recommender):
    """Scores are uniform in [0, 1), a fixed function of ``(seed, user, item)``.

    Hashing instead of drawing keeps the ranking of a user the same whatever batch it is
    scored in, and costs no memory per user.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def fit(self, train: sp.csr_matrix) -> RandomRecommender:
        self.n_users, self.n_items = train.shape
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.uint64)[:, None]  # (B, 1)
        items = np.arange(self.n_items, dtype=np.uint64)[None, :]  # (1, n_items)
        with np.errstate(over="ignore"):
            key = (np.uint64(self.seed) * np.uint64(0x9E3779B97F4A7C15)
                   + users * np.uint64(0xBF58476D1CE4E5B9) + items)  # fmt: skip
            bits = _splitmix64(key)  # (B, n_items)
        return ((bits >> np.uint64(40)).astype(np.float32) / np.float32(2**24)).astype(np.float32)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijective, well-mixed hash of 64-bit keys."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
