"""Alternating least squares for implicit feedback (Hu, Koren & Volinsky 2008), via implicit."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.memory import FLOAT32
from recsys.models.base import FactorRecommender, check_positive

FOLD_IN_BLOCK = 256  # users folded in at once


class ALSRecommender(FactorRecommender):
    """implicit's ``AlternatingLeastSquares`` with the confidence ``1 + alpha * r_ui``.

    Parameters
    ----------
    factors
        Embedding size.
    regularization
        L2 penalty on both factor matrices (implicit scales it by the number of interactions
        only with ``dynamic`` regularisation, which this wrapper does not use).
    alpha
        Confidence weight of an observed interaction.
    iterations
        Alternating sweeps.
    num_threads
        Threads for implicit's solver (0: all cores). Each user/item solve is independent of
        the others, so the result does not depend on it.
    seed
        Seed of the factors' initialisation.
    """

    def __init__(self, factors: int, regularization: float, alpha: float, iterations: int,
                 num_threads: int, seed: int):  # fmt: skip
        self.factors = check_positive("model.factors", factors, integer=True)
        self.regularization = check_positive("model.regularization", regularization,
                                             allow_zero=True)  # fmt: skip
        self.alpha = check_positive("model.alpha", alpha)
        self.iterations = check_positive("model.iterations", iterations, integer=True)
        self.num_threads = check_positive("model.num_threads", num_threads, integer=True,
                                          allow_zero=True)  # fmt: skip
        self.seed = int(seed)

    def fit(self, train: sp.csr_matrix) -> ALSRecommender:
        from implicit.cpu.als import AlternatingLeastSquares

        self.n_users, self.n_items = train.shape
        # implicit's solver is multithreaded itself; a multithreaded BLAS underneath it only
        # oversubscribes the cores (implicit warns about it when the model is built), so pin
        # BLAS to one thread for as long as implicit runs.
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                calculate_training_loss=False,
                num_threads=self.num_threads,
                random_state=self.seed,
            )
            model.fit(sp.csr_matrix(train, dtype=np.float32), show_progress=False)
        self._user_vectors = np.asarray(model.user_factors, dtype=np.float32)
        self._item_vectors = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def memory_needed(self, n_users: int, n_items: int, nnz: int) -> dict[str, int]:
        return {"user and item factors (float32, with implicit's copies)":
                2 * (n_users + n_items) * self.factors * FLOAT32,
                "confidence matrices, user- and item-major": 2 * nnz * (FLOAT32 + 4)}  # fmt: skip

    def fold_in(self, rows: sp.spmatrix) -> np.ndarray:
        """``(B, factors)`` user vectors of users known only by ``rows`` (not in training):
        ``als_user_step`` against the fitted item vectors."""
        return als_user_step(self._item_vectors, rows, self.alpha, self.regularization)

    def score_fold_in(self, rows: sp.spmatrix) -> np.ndarray:
        """``(B, n_items)`` scores of users known only by ``rows`` (see ``fold_in``)."""
        return self.fold_in(rows) @ self._item_vectors.T


def als_user_step(item_vectors: np.ndarray, rows: sp.spmatrix, alpha: float,
                  regularization: float) -> np.ndarray:  # fmt: skip
    """``(B, d)`` float32 user vectors of the users ``rows`` from fixed item vectors ``Y``.

    The ALS user step (Hu et al. 2008, eq. 4) with implicit's confidence ``c_ui = alpha *
    r_ui`` on the stored entries:
    ``x_u = (Y^T Y + Y^T (C^u - I) Y + lambda I)^{-1} Y^T C^u p(u)``, summed over the user's
    items only (what ``implicit``'s ``recalculate_user`` computes). Solved for all rows at
    once; memory ``nnz * d^2`` floats, so rows come in blocks. A user with no items gets 0.
    """
    rows = sp.csr_matrix(rows, dtype=np.float64)
    items = np.asarray(item_vectors, dtype=np.float64)  # (n_items, d)
    d = items.shape[1]
    base = items.T @ items + regularization * np.eye(d)  # (d, d)
    vectors = np.zeros((rows.shape[0], d))
    for start in range(0, rows.shape[0], FOLD_IN_BLOCK):
        block = rows[start : start + FOLD_IN_BLOCK]
        block.eliminate_zeros()
        confidence = alpha * block.data  # (nnz,)
        liked = items[block.indices]  # (nnz, d)
        outer = (confidence - 1.0)[:, None, None] * liked[:, :, None] * liked[:, None, :]
        gram = np.broadcast_to(base, (block.shape[0], d, d)).copy()  # (b, d, d)
        target = np.zeros((block.shape[0], d))
        has = np.diff(block.indptr) > 0
        starts = block.indptr[:-1][has]
        gram[has] += np.add.reduceat(outer, starts, axis=0)
        target[has] = np.add.reduceat(confidence[:, None] * liked, starts, axis=0)
        vectors[start : start + len(block.indptr) - 1] = np.linalg.solve(
            gram, target[:, :, None])[:, :, 0]  # fmt: skip
    return vectors.astype(np.float32)
