"""Session EASE: EASE's item-item weights fitted on bursts of ratings, not on whole users.

A session is a run of ratings a user gave close together in time. A MovieLens user rates in
bursts: a page of films, then another, minutes or months later. Two films rated in the same
burst are related by more than two films of the same user (the page, the genre, the era being
rated); on ML-100K three ratings in four share their second with another of the same user's. The
weights learn from that; scores are still ``X B`` of the user's whole training row, so the test
items' times are never looked at.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError
from recsys.models.base import check_positive
from recsys.models.ease import EASERecommender


class SessionEASERecommender(EASERecommender):
    """``scores = X B`` with ``B`` EASE's closed form (``EASERecommender``, the same
    regularisation, dropout, diagonal and basket weights) fitted on the session matrix ``S``:
    one row per session, the items rated in it.

    A user's training interactions, ordered by time (ties: by item), start a new session where
    more than ``gap_seconds`` pass between two of them; ``S`` has as many stored entries as the
    training matrix. ``B`` minimises ``||S - S B||^2 + ...`` (``EASERecommender.item_weights``
    with ``S`` for ``X``, a session's weight ``n_s^-γ`` for a user's). A model of co-occurrence
    within bursts, like session-based item-item neighbours (Ludewig & Jannach 2018), scoring
    every user from their whole row.

    Parameters
    ----------
    regularization, dropout, zero_diagonal, user_weight
        As ``EASERecommender``'s, over sessions.
    gap_seconds
        The longest pause, in seconds, within a session (0: only ratings of the same second).
    seed
        Unused: the solution is deterministic.
    rated_at
        ``(n_users, n_items)`` when each interaction of the data was given
        (``recsys.config.rating_times``; the entry point passes it, as it depends on the data).
        Only the training matrix's own entries are read (a pair rated twice has its latest
        time: on data where the two fell into different parts, the training entry would read
        the other's; MovieLens has no such pair).
    """

    uses_timestamps = True  # recsys.config.build_model passes rated_at

    def __init__(self, regularization: float, dropout: float, zero_diagonal: bool,
                 user_weight: float, gap_seconds: float, seed: int,
                 rated_at: sp.spmatrix | None):  # fmt: skip
        super().__init__(regularization, dropout, zero_diagonal, user_weight, seed)
        self.gap_seconds = check_positive("model.gap_seconds", gap_seconds, allow_zero=True)
        self.rated_at = None if rated_at is None else sp.csr_matrix(rated_at)

    def fit(self, train: sp.csr_matrix) -> SessionEASERecommender:
        self.n_users, self.n_items = train.shape
        self._weights = self.item_weights(self.sessions(train))
        self._train = sp.csr_matrix(train, dtype=np.float32)
        return self

    def __getstate__(self) -> dict:
        """What a pickle (the model cache's entry) keeps: everything but ``rated_at``, which
        holds every rating's time, the test ratings' too, and which scoring never reads. A
        model loaded from it scores as before and, asked to fit again, says it needs the times."""
        return self.__dict__ | {"rated_at": None}

    def sessions(self, train: sp.csr_matrix) -> sp.csr_matrix:
        """``(n_sessions, n_items)`` float64 binary matrix of the sessions of ``train``'s
        interactions (the times of its stored entries, looked up in ``rated_at``)."""
        if self.rated_at is None:
            raise ConfigError("session_ease needs when each rating was given: build it with the "
                              "data (recsys.config.create_model(..., data=...)), as model= runs "
                              "do")  # fmt: skip
        if self.rated_at.shape != train.shape:
            raise ConfigError(f"session_ease: the training matrix is {train.shape} but the "
                              f"ratings' times are {self.rated_at.shape}: build the model with "
                              f"the data it trains on")  # fmt: skip
        train = sp.csr_matrix(train)
        train.eliminate_zeros()
        user, item = train.nonzero()
        stored = sp.csr_matrix((np.ones(self.rated_at.nnz), self.rated_at.indices,
                                self.rated_at.indptr), shape=train.shape)  # fmt: skip
        missing = len(user) - int(np.asarray(stored[user, item]).sum())  # pairs with no time
        if missing:
            raise ConfigError(f"session_ease: {missing} training interactions have no time in "
                              f"the data given: build the model with the data it trains on")
        when = np.asarray(self.rated_at[user, item]).ravel()
        order = np.lexsort((item, when, user))
        user, item, when = user[order], item[order], when[order]
        starts = np.ones(len(user), dtype=bool)
        starts[1:] = (user[1:] != user[:-1]) | (np.diff(when) > self.gap_seconds)
        session = np.cumsum(starts) - 1
        return sp.csr_matrix((np.ones(len(item)), (session, item)),
                             shape=(int(starts.sum()), train.shape[1]))  # fmt: skip
