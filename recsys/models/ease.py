"""EASE: the closed-form linear item-item autoencoder (Steck 2019), with two extensions.

Emphasised dropout (EDLAE, Steck 2020) and a per-user weight on the reconstruction loss.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.memory import FLOAT64
from recsys.models.base import Recommender, check_bool, check_positive, check_probability


class EASERecommender(Recommender):
    """A linear item-item model ``scores = X B`` with ``B`` in closed form.

    With the user weights ``W = diagMat(w)``, the weighted Gram matrix ``G = X^T W X``, the
    diagonal regulariser
    ``Λ = λ I + p / (1 - p) diagMat(diag(G))`` and ``P = (G + Λ)^{-1}``:

    - ``zero_diagonal=true`` (EASE, Steck 2019): ``B`` minimises
      ``||W^½ (X - XB)||^2 + ||Λ^½ B||^2``
      subject to ``diag(B) = 0``: ``B = I - P diagMat(1 / diag(P))``, i.e. ``B_ij = -P_ij / P_jj``.
    - ``zero_diagonal=false`` (full-rank EDLAE, Steck 2020, eq. 8): the same objective without the
      constraint, ``B = (G + Λ)^{-1} G = I - P Λ``.

    The ``p / (1 - p)`` term is what dropout of input entries with probability ``p`` adds to the
    expected loss (``E ||X - (X ∘ M / (1 - p)) B||^2`` with ``M_ui ~ Bernoulli(1 - p)``): items seen
    often are penalised more, which keeps the unconstrained ``B`` away from the identity. With
    ``dropout=0``, ``zero_diagonal=true`` and ``user_weight=0`` this is Steck's original EASE.

    User weights ``w_u ∝ n_u^-γ`` (``n_u``: the user's training items, ``γ = user_weight``)
    weigh each user's reconstruction error less the more items they have. Unweighted, a user
    adds ``n_u`` to the diagonal of ``G`` and ``n_u^2`` co-occurrences in all, so the heaviest
    users dominate it; weighted, a user adds ``n_u^(1-γ)`` to the diagonal (``γ = 1``: every user
    the same). The weights are scaled so that ``sum_u w_u n_u`` is the number of training
    interactions (``trace G`` stays what it is unweighted, so ``lambda`` keeps its scale).
    Scores stay ``X B``: a user's ranking does not depend on their own weight.

    Memory and time grow with the catalogue: the fit holds four ``n_items x n_items`` float64
    arrays at once during the inversion (the Gram matrix and numpy's work arrays: 90 MB on
    ML-100K, 22 GiB for ML-20M's 27k items, 229 GiB for ML-32M's 87,585), which
    ``memory_needed`` states, so a run refuses up front where they do not fit.

    Parameters
    ----------
    regularization
        lambda, the L2 weight (Steck's ``lambda``; ML-100K wants a few hundred).
    dropout
        ``p`` in ``[0, 1)``, the emphasised-dropout probability (0: none).
    zero_diagonal
        Constrain ``diag(B) = 0`` (EASE) or not (EDLAE).
    user_weight
        ``γ >= 0``, the exponent of the user weights ``n_u^-γ`` (0: every interaction counts
        the same, as in Steck's EASE).
    seed
        Unused: the solution is deterministic (every model takes the run's seed).
    """

    def __init__(self, regularization: float, dropout: float, zero_diagonal: bool,
                 user_weight: float, seed: int):  # fmt: skip
        self.regularization = check_positive("model.regularization", regularization)
        self.dropout = check_probability("model.dropout", dropout)
        self.zero_diagonal = check_bool("model.zero_diagonal", zero_diagonal)
        self.user_weight = check_positive("model.user_weight", user_weight, allow_zero=True)
        self.seed = seed  # unused: the solution is deterministic
        self._train: sp.csr_matrix | None = None
        self._weights: np.ndarray | None = None

    def fit(self, train: sp.csr_matrix) -> EASERecommender:
        self.n_users, self.n_items = train.shape
        self._weights = self.item_weights(sp.csr_matrix(train, dtype=np.float64))
        self._train = sp.csr_matrix(train, dtype=np.float32)
        return self

    def item_weights(self, rows: sp.csr_matrix) -> np.ndarray:
        """``(n_items, n_items)`` float32 ``B`` fitted to reconstruct the float64 ``rows`` (a
        training user's items each, or other baskets of items: ``SessionEASERecommender``)."""
        weighted = rows
        if self.user_weight:
            weighted = sp.diags(np.sqrt(self.user_weights(rows))) @ rows
        gram = (weighted.T @ weighted).toarray()  # (n_items, n_items): X^T W X
        del weighted
        penalty = self.regularization + self.dropout / (1.0 - self.dropout) * np.diag(gram)
        gram[np.diag_indices_from(gram)] += penalty
        weights = np.linalg.inv(gram)  # P, turned into B in place (one n_items^2 array less)
        del gram
        if self.zero_diagonal:
            weights /= -np.diag(weights)[None, :]  # -P_ij / P_jj
            weights[np.diag_indices_from(weights)] = 0.0
        else:
            weights *= -penalty[None, :]  # I - P diagMat(penalty)
            weights[np.diag_indices_from(weights)] += 1.0
        return weights.astype(np.float32)

    def user_weights(self, train: sp.csr_matrix) -> np.ndarray:
        """``(n_users,)`` weights ``n_u^-γ``, scaled so that ``sum_u w_u n_u = nnz`` (a user
        without training items weighs nothing: their row is zero)."""
        counts = np.diff(train.indptr).astype(np.float64)  # n_u
        weights = np.maximum(counts, 1.0) ** -self.user_weight
        return weights * (counts.sum() / (weights @ counts))

    def memory_needed(self, n_users: int, n_items: int, nnz: int) -> dict[str, int]:
        square = n_items * n_items
        # measured: numpy's inv holds three n_items^2 float64 arrays beside the Gram matrix
        # (LAPACK's copy of it, the system solved, the result)
        return {"Gram matrix (n_items^2 float64)": square * FLOAT64,
                "its inversion (3 more such arrays)": 3 * square * FLOAT64,
                "training matrix in float64": nnz * 12}  # fmt: skip

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self._train[users] @ self._weights)  # (B, n_items)

    def score_fold_in(self, rows: sp.spmatrix) -> np.ndarray:
        """``(B, n_items)`` scores of users known only by the binary ``rows`` of their items
        (not in training): ``rows @ B``, the same formula as for a training user."""
        return np.asarray(sp.csr_matrix(rows, dtype=np.float32) @ self._weights)
