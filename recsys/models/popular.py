"""Most-popular: every user gets the items with the most training interactions."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.models.base import Recommender


class PopularRecommender(Recommender):
    """Scores an item by its number of training interactions (the same for every user)."""

    def __init__(self, seed: int):
        self.seed = seed  # unused: the model is deterministic; kept for a uniform signature
        self.item_popularity: np.ndarray | None = None

    def fit(self, train: sp.csr_matrix) -> PopularRecommender:
        self.n_users, self.n_items = train.shape
        self.item_popularity = np.asarray(train.sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_popularity, (len(users), self.n_items))
