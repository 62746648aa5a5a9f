r"""Top-K ranking metrics over the full item catalogue, vectorised over users.

Every metric takes the same inputs: ``top_items``, an ``(n_users, K)`` matrix of item indices,
best first, for the users being evaluated (``-1`` marks an empty slot, when fewer than ``K``
items were rankable), and ``truth``, a CSR matrix whose row ``r`` holds the relevant (held-out)
items of the user in row ``r`` of ``top_items``. Relevance is binary. Each function returns one
value per user; means are taken by the caller.

Let :math:`R_u` be user :math:`u`'s relevant items, :math:`\mathrm{rel}_u(i) \in \{0, 1\}`
whether the item at rank :math:`i` (1-based) is relevant, and :math:`h_u(k) = \sum_{i \le k}
\mathrm{rel}_u(i)` the hits in the top :math:`k`.

.. math::

    \mathrm{Precision@}k &= h_u(k) / k \\
    \mathrm{Recall@}k &= h_u(k) / |R_u| \\
    \mathrm{AP@}k &= \frac{1}{\min(k, |R_u|)} \sum_{i \le k} \mathrm{rel}_u(i)\, h_u(i) / i \\
    \mathrm{AP_R@}k &= \frac{1}{|R_u|} \sum_{i \le k} \mathrm{rel}_u(i)\, h_u(i) / i \\
    \mathrm{NDCG@}k &= \frac{\sum_{i \le k} \mathrm{rel}_u(i) / \log_2(i + 1)}
                            {\sum_{i \le \min(k, |R_u|)} 1 / \log_2(i + 1)} \\
    \mathrm{HitRate@}k &= [h_u(k) > 0] \\
    \mathrm{MRR@}k &= 1 / \text{rank of the first relevant item in the top } k
                      \text{ (0 if none)}

MAP@K is the mean of AP@K over users, normalised by :math:`\min(K, |R_u|)` as in Microsoft
Recommenders' ``map_at_k`` and RecBole, so a perfect ranking scores 1. ``map_r`` is the other
definition in the literature, normalised by :math:`|R_u|` (Microsoft Recommenders' older
``map``, the one its published ML-100K benchmark table uses): it cannot reach 1 when
:math:`|R_u| > K`, so it reads lower than MAP@K for users with many held-out items. Recall
divides by :math:`|R_u|` (all relevant items), so it can stay below 1 when :math:`|R_u| > k`.

Users with no relevant items are undefined for every metric: callers skip them and report how
many were skipped (``evaluate`` does). Catalogue coverage@k is one number per ranking, not per
user: the share of all items that appear in at least one user's top :math:`k`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

METRICS = ("precision", "recall", "map", "map_r", "ndcg", "hit_rate", "mrr")


def hit_matrix(top_items: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """``(n_users, K)`` bool: is ``top_items[r, j]`` among row ``r``'s relevant items?

    Looks every ``(row, item)`` pair up in the sorted CSR keys at once (no loop over users).
    """
    truth = sp.csr_matrix(truth)
    truth.sort_indices()
    n_rows, n_cols = truth.shape
    if top_items.shape[0] != n_rows:
        raise ValueError(f"top_items has {top_items.shape[0]} rows, truth has {n_rows}")
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(truth.indptr))
    keys = rows * n_cols + truth.indices  # (nnz,) sorted, since CSR rows are in order
    query = np.arange(n_rows, dtype=np.int64)[:, None] * n_cols + top_items  # (U, K)
    if keys.size == 0:
        return np.zeros(top_items.shape, dtype=bool)
    position = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return (keys[position] == query) & (top_items >= 0)


def precision_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """:math:`h_u(k) / k`, from a hit matrix (see ``hit_matrix``)."""
    return hits[:, :k].sum(axis=1) / k


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """:math:`h_u(k) / |R_u|`."""
    return hits[:, :k].sum(axis=1) / n_relevant


def _precision_at_hits(hits: np.ndarray, k: int) -> np.ndarray:
    """``(U,)`` sum over the ranks i <= k that hold a hit of the precision at i."""
    hits = hits[:, :k]
    ranks = np.arange(1, hits.shape[1] + 1)
    return (np.cumsum(hits, axis=1) / ranks * hits).sum(axis=1)


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k normalised by :math:`\\min(k, |R_u|)`."""
    return _precision_at_hits(hits, k) / np.minimum(k, n_relevant)


def map_r_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k normalised by :math:`|R_u|` (the older definition; see the module docstring)."""
    return _precision_at_hits(hits, k) / n_relevant


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Binary-relevance NDCG@k with the ideal DCG over :math:`\\min(k, |R_u|)` hits."""
    hits = hits[:, :k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))  # (k,)
    dcg = hits @ discounts[: hits.shape[1]]
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])  # ideal[n]: n hits at the top
    return dcg / ideal[np.minimum(k, n_relevant)]


def hit_rate_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """1 if any relevant item is in the top k, else 0."""
    return hits[:, :k].any(axis=1).astype(np.float64)


def mrr_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Reciprocal rank of the first relevant item in the top k (0 if none)."""
    hits = hits[:, :k]
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


METRIC_FUNCTIONS = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "map": map_at_k,
    "map_r": map_r_at_k,
    "ndcg": ndcg_at_k,
    "hit_rate": hit_rate_at_k,
    "mrr": mrr_at_k,
}


def catalogue_coverage(top_items: np.ndarray, n_items: int, k: int) -> float:
    """Share of the ``n_items`` catalogue that appears in at least one top-k list."""
    shown = top_items[:, :k]
    return np.unique(shown[shown >= 0]).size / n_items


def ranking_metrics(
    top_items: np.ndarray, truth: sp.csr_matrix, ks: list[int]
) -> dict[str, np.ndarray]:
    """Per-user values of every metric at every k, keyed ``"ndcg@10"`` etc.

    Every row of ``truth`` must hold at least one relevant item.
    """
    n_relevant = np.diff(sp.csr_matrix(truth).indptr)
    if (n_relevant == 0).any():
        raise ValueError("every evaluated user needs at least one relevant item")
    if max(ks) > top_items.shape[1]:
        raise ValueError(f"k={max(ks)} exceeds the {top_items.shape[1]} ranked items")
    hits = hit_matrix(top_items, truth)
    return {
        f"{name}@{k}": METRIC_FUNCTIONS[name](hits, n_relevant, k)
        for k in ks
        for name in METRICS
    }


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one model on one held-out part.

    ``per_user`` has one row per evaluated user (original ``user_id``) and one column per
    metric@k; ``summary`` holds their means, catalogue coverage@k and the user counts (with
    an ``exclude``, the users with no excluded item, no history, too), and, where only some
    users have a history, the means over those users (``with_history/<metric>@k``);
    ``top_items`` is the ``(n_evaluated, max(ks))`` ranking behind them (item indices, rows in
    the order of ``per_user``).
    """

    per_user: pd.DataFrame
    summary: dict[str, float]
    top_items: np.ndarray


def evaluate(
    model,
    truth: sp.csr_matrix,
    exclude: sp.csr_matrix | None,
    ks: list[int],
    user_ids: np.ndarray | None = None,
    batch_size: int = 1024,
) -> Evaluation:
    """Rank the full catalogue for every user with held-out items and score the ranking.

    Parameters
    ----------
    model
        A fitted ``recsys.models.Recommender``.
    truth
        ``(n_users, n_items)`` held-out interactions; users without any are skipped.
    exclude
        ``(n_users, n_items)`` items never to recommend (the user's training items).
    ks
        Cut-offs; the ranking is computed once at ``max(ks)``.
    user_ids
        Original ids for the ``per_user`` table (defaults to indices).
    """
    truth = sp.csr_matrix(truth)
    n_relevant = np.diff(truth.indptr)
    users = np.flatnonzero(n_relevant > 0)
    top_items, _ = model.recommend(users, max(ks), exclude=exclude, batch_size=batch_size)
    values = ranking_metrics(top_items, truth[users], ks)
    ids = users if user_ids is None else np.asarray(user_ids)[users]
    per_user = pd.DataFrame({"user_id": ids, "n_relevant": n_relevant[users], **values})
    summary = {name: float(column.mean()) for name, column in values.items()}
    for k in ks:
        summary[f"coverage@{k}"] = catalogue_coverage(top_items, truth.shape[1], k)
    summary["n_users"] = float(len(users))
    summary["n_users_skipped"] = float(truth.shape[0] - len(users))
    if exclude is not None:  # what each user is known by: their training items
        # users with none (on a global time split, those whose whole history is late): a model
        # that scores from a user's history ranks them by its ties alone
        without = np.diff(sp.csr_matrix(exclude).indptr)[users] == 0
        summary["n_users_without_history"] = float(without.sum())
        if without.any() and not without.all():
            summary |= {f"with_history/{name}": float(column[~without].mean())
                        for name, column in values.items()}  # fmt: skip
    return Evaluation(per_user=per_user, summary=summary, top_items=top_items)
