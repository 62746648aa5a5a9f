"""Item-based k-nearest neighbours with shrunk cosine similarity."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.memory import FLOAT32
from recsys.models.base import Recommender, check_positive, top_k


class ItemKNNRecommender(Recommender):
    """Score ``s_ui = sum_{j in I_u} sim(j, i)`` over ``i``'s ``neighbors`` most similar items.

    ``sim(i, j) = |U_i & U_j| / (sqrt(|U_i| |U_j|) + shrinkage)`` on binary interactions
    (cosine, shrunk towards 0 for items with little support). Only each item's top
    ``neighbors`` similarities are kept, computed in blocks of items so memory stays at
    ``block * n_items`` floats plus the sparse result.

    Parameters
    ----------
    neighbors
        Similarities kept per item.
    shrinkage
        Added to the cosine's denominator.
    block_size
        Items whose similarities are computed at once (memory only, not the result).
    seed
        Unused: the model is deterministic (every model takes the run's seed).
    """

    def __init__(self, neighbors: int, shrinkage: float, block_size: int, seed: int):
        self.neighbors = check_positive("model.neighbors", neighbors, integer=True)
        self.shrinkage = check_positive("model.shrinkage", shrinkage, allow_zero=True)
        self.block_size = check_positive("model.block_size", block_size, integer=True)
        self.seed = seed  # unused: the model is deterministic
        self._train: sp.csr_matrix | None = None
        self._similarity: sp.csr_matrix | None = None

    def fit(self, train: sp.csr_matrix) -> ItemKNNRecommender:
        self.n_users, self.n_items = train.shape
        self._train = sp.csr_matrix(train, dtype=np.float32)
        item_user = self._train.T.tocsr()  # (n_items, n_users)
        norms = np.sqrt(np.asarray(item_user.sum(axis=1), dtype=np.float32).ravel())
        k = min(self.neighbors, self.n_items - 1)
        blocks = []
        for start in range(0, self.n_items, self.block_size):  # blocks of items, not items
            stop = min(start + self.block_size, self.n_items)
            overlap = (item_user[start:stop] @ self._train).toarray()  # (b, n_items)
            similarity = overlap / (norms[start:stop, None] * norms[None, :] + self.shrinkage
                                    + 1e-12)  # fmt: skip
            similarity[np.arange(stop - start), np.arange(start, stop)] = 0.0  # not itself
            blocks.append(_keep_top_k(similarity, k))
        # row j of the stacked matrix holds j's neighbours i: score = X_u @ S
        self._similarity = sp.vstack(blocks).tocsr()
        return self

    def memory_needed(self, n_users: int, n_items: int, nnz: int) -> dict[str, int]:
        block = min(self.block_size, n_items)
        return {"similarity blocks (sparse product, dense overlap and similarity)":
                block * n_items * (12 + 2 * FLOAT32),
                "kept neighbours": n_items * self.neighbors * 12}  # fmt: skip

    def score(self, users: np.ndarray) -> np.ndarray:
        return (self._train[users] @ self._similarity).toarray()  # (B, n_items)

    def score_fold_in(self, rows: sp.spmatrix) -> np.ndarray:
        """``(B, n_items)`` scores of users known only by the binary ``rows`` of their items
        (not in training): the same sum of similarities as for a training user."""
        return (sp.csr_matrix(rows, dtype=np.float32) @ self._similarity).toarray()


def _keep_top_k(similarity: np.ndarray, k: int) -> sp.csr_matrix:
    """Sparse copy of ``similarity`` keeping the ``k`` largest positive values per row.

    Ties are broken by the lower item index (``top_k``), so the neighbours kept do not depend
    on which partition kernel numpy picks for this CPU: ``argpartition`` chooses among tied
    values differently with and without AVX-512, and shrunk cosines of small integer counts
    tie often.
    """
    top, values = top_k(similarity, k)  # (b, k)
    rows = np.broadcast_to(np.arange(len(similarity))[:, None], top.shape)
    keep = values > 0
    return sp.csr_matrix((values[keep], (rows[keep], top[keep])), shape=similarity.shape,
                         dtype=np.float32)  # fmt: skip
