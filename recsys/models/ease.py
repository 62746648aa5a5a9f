"""EASE: the closed-form linear item-item autoencoder (Steck 2019)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.models.base import Recommender, check_positive


class EASERecommender(Recommender):
    """``B = argmin ||X - XB||^2 + lambda ||B||^2`` subject to ``diag(B) = 0``, in closed form.

    With ``P = (X^T X + lambda I)^{-1}``: ``B_ij = -P_ij / P_jj`` off the diagonal. Scores are
    ``X_u B``. Memory and time grow with the catalogue: an ``n_items x n_items`` dense inverse
    (1682^2 floats on ML-100K; about 2.9 GB in float32 for ML-20M's 27k items).

    Parameters
    ----------
    regularization
        lambda, the L2 weight (Steck's ``lambda``; ML-100K wants a few hundred).
    seed
        Unused: the solution is deterministic (every model takes the run's seed).
    """

    def __init__(self, regularization: float, seed: int):
        self.regularization = check_positive("model.regularization", regularization)
        self.seed = seed  # unused: the solution is deterministic
        self._train: sp.csr_matrix | None = None
        self._weights: np.ndarray | None = None

    def fit(self, train: sp.csr_matrix) -> EASERecommender:
        self.n_users, self.n_items = train.shape
        self._train = sp.csr_matrix(train, dtype=np.float64)
        gram = (self._train.T @ self._train).toarray()  # (n_items, n_items)
        gram[np.diag_indices_from(gram)] += self.regularization
        precision = np.linalg.inv(gram)
        weights = -precision / np.diag(precision)[None, :]
        weights[np.diag_indices_from(weights)] = 0.0
        self._weights = weights.astype(np.float32)
        self._train = self._train.astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self._train[users] @ self._weights)  # (B, n_items)
