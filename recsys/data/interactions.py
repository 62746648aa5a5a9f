"""Ratings turned into implicit-feedback interactions over contiguous user and item indices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import ConfigError


@dataclass(frozen=True)
class Interactions:
    """Interaction rows over contiguous indices ``0..n_users-1`` and ``0..n_items-1``.

    ``user_ids[u]`` / ``item_ids[i]`` give the original MovieLens ids of index ``u`` / ``i``.
    Every user and item of the release has an index, also those without interactions, so the
    index space is the same for every split of the same data.
    """

    user: np.ndarray  # (n,) int64 user index
    item: np.ndarray  # (n,) int64 item index
    rating: np.ndarray  # (n,) float32
    timestamp: np.ndarray  # (n,) int64
    user_ids: np.ndarray  # (n_users,) int64 original ids
    item_ids: np.ndarray  # (n_items,) int64 original ids

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.user)

    def subset(self, mask: np.ndarray) -> Interactions:
        """The rows where ``mask`` is true (or the rows at integer positions ``mask``)."""
        return Interactions(
            self.user[mask], self.item[mask], self.rating[mask], self.timestamp[mask],
            self.user_ids, self.item_ids,
        )  # fmt: skip

    def to_csr(self) -> sp.csr_matrix:
        """Binary ``(n_users, n_items)`` float32 matrix of the interactions."""
        data = np.ones(len(self.user), dtype=np.float32)
        matrix = sp.csr_matrix(
            (data, (self.user, self.item)), shape=(self.n_users, self.n_items), dtype=np.float32
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix

    def rating_times(self) -> sp.csr_matrix:
        """``(n_users, n_items)`` int64 matrix of when each interaction was given (the latest,
        for a pair given twice); every interaction is stored, also one at time 0."""
        order = np.lexsort((self.timestamp, self.item, self.user))
        user, item, timestamp = self.user[order], self.item[order], self.timestamp[order]
        last = np.ones(len(user), dtype=bool)
        last[:-1] = (user[1:] != user[:-1]) | (item[1:] != item[:-1])
        matrix = sp.coo_matrix((timestamp[last].astype(np.int64), (user[last], item[last])),
                               shape=(self.n_users, self.n_items))  # fmt: skip
        return matrix.tocsr()

    def to_frame(self) -> pd.DataFrame:
        """The rows with original ids: ``user_id, item_id, rating, timestamp``."""
        return pd.DataFrame(
            {
                "user_id": self.user_ids[self.user],
                "item_id": self.item_ids[self.item],
                "rating": self.rating,
                "timestamp": self.timestamp,
            }
        )


def to_interactions(
    ratings: pd.DataFrame,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    min_rating: float | None = None,
) -> Interactions:
    """Keep the ratings that count as positives and map ids to contiguous indices.

    Parameters
    ----------
    ratings
        ``user_id, item_id, rating, timestamp`` with original ids.
    user_ids, item_ids
        The full id lists of the release (sorted); they define the index space.
    min_rating
        Ratings ``>= min_rating`` are positives; ``None`` keeps every rating (the default
        protocol of Microsoft Recommenders' MovieLens benchmark).
    """
    if min_rating is not None:
        if not np.isfinite(min_rating):
            raise ConfigError(f"data.min_rating must be a number or null, got {min_rating!r}")
        ratings = ratings[ratings["rating"] >= min_rating]
    user_ids = np.asarray(user_ids, dtype=np.int64)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    user = _index_of(user_ids, ratings["user_id"].to_numpy(np.int64), "user")
    item = _index_of(item_ids, ratings["item_id"].to_numpy(np.int64), "item")
    return Interactions(
        user=user,
        item=item,
        rating=ratings["rating"].to_numpy(np.float32),
        timestamp=ratings["timestamp"].to_numpy(np.int64),
        user_ids=user_ids,
        item_ids=item_ids,
    )


def _index_of(sorted_ids: np.ndarray, ids: np.ndarray, what: str) -> np.ndarray:
    index = np.searchsorted(sorted_ids, ids)
    index = np.minimum(index, len(sorted_ids) - 1)
    unknown = sorted_ids[index] != ids
    if unknown.any():
        raise ValueError(f"ratings mention {what} ids missing from the {what} table: "
                         f"{np.unique(ids[unknown])[:5].tolist()}")  # fmt: skip
    return index.astype(np.int64)
