"""An ensemble: a weighted sum of its members' standardised scores, weights chosen on validation.

The default blends EASE, ALS, Mult-VAE and Session EASE (which reads the training ratings'
times) with weights chosen once, on the validation parts of split seeds that no run or study
uses (``experiments/ensemble_weights.py``); ``weights: null`` chooses them on each run's own
validation part instead.

Each member is a configured recsys model (``members`` in ``conf/model/ensemble.yaml`` includes
the members' own YAMLs, so a member is exactly what ``model=<name>`` runs). For a user, each
member's scores are standardised over the items the user has no training interaction with (the
candidates a ranking returns): minus their mean, divided by their standard deviation, so members
with different score scales blend on equal terms. The ensemble's score is ``sum_m w_m z_m`` with
weights on the simplex (``w_m >= 0, sum w_m = 1``).

Why over the candidates only: a member scores the user's own training items far apart from the
rest (EASE reconstructs them, a VAE puts its probability mass on them), and how far differs
from member to member; counted in, they set much of a member's mean and spread, and so its
weight in the blend, without being rankable. Validation does not tell the two apart: on split
seeds 100-104 the best grid point scores 0.1866 over the unseen items and 0.1863 over the
catalogue (``standardise_over``; experiments/README.md), so the reason above decides.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Self

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError
from recsys.models.base import Recommender, binary_rows, check_choice, check_positive

STANDARDISE_OVER = ("unseen", "catalogue")
# the weight search keeps each batch's standardised member scores (every grid point ranks the
# same validation users) up to this many bytes; batches beyond it are scored again each time
SEARCH_CACHE_BYTES = 2**30


class EnsembleRecommender(Recommender):
    """A weighted blend of members' per-user standardised scores.

    Parameters
    ----------
    members
        ``{name: factory}``, where ``factory(seed=...)`` builds a member (Hydra gives partials
        of the members' configs).
    weights
        ``{name: weight}`` to use as given (normalised to sum 1), or ``None`` to choose them on
        validation: every point of the simplex grid with step ``weight_step``, the best
        validation objective wins (ties: the earlier grid point, equal weights first).
        Without a validation part, ``None`` means equal weights.
    weight_step
        Grid step of the weight search (0.05: 21 points for two members, 231 for three).
    standardise_over
        ``unseen``: each user's mean and spread are taken over the items outside the matrix
        the ensemble was fitted on (the candidates, when test excludes those items);
        ``catalogue``: over every item.
    seed
        Passed to every member.
    rated_at
        When each rating was given (``recsys.config.rating_times``), passed to the members that
        learn from it (``uses_timestamps``); the others never see it.

    Members fit on the same training data (iterative ones early-stop on validation); a refit
    trains them again on more data with the chosen weights and their chosen epochs.
    """

    uses_timestamps = True  # for members that do: recsys.config.build_model passes rated_at

    def __init__(self, members: Mapping[str, Callable[..., Recommender]],
                 weights: Mapping[str, float] | None, weight_step: float,
                 standardise_over: str, seed: int,
                 rated_at: sp.spmatrix | None):  # fmt: skip
        self.standardise_over = check_choice("model.standardise_over", standardise_over,
                                             STANDARDISE_OVER)  # fmt: skip
        if len(members) < 2:
            raise ConfigError(f"model.members needs two or more models, got {list(members)}")
        self.weight_step = check_positive("model.weight_step", weight_step)
        if abs(round(1 / self.weight_step) * self.weight_step - 1) > 1e-9:
            raise ConfigError(f"model.weight_step must divide 1 (0.05, 0.1, 0.25...), got "
                              f"{weight_step}")  # fmt: skip
        self.members = {name: factory(seed=seed, **({"rated_at": rated_at} if getattr(
            getattr(factory, "func", None), "uses_timestamps", False) else {}))
            for name, factory in members.items()}  # fmt: skip
        for name, member in self.members.items():
            if getattr(member, "uses_side_features", False):
                raise ConfigError(f"model.members.{name}: members with side features are not "
                                  f"supported in an ensemble")  # fmt: skip
        self.weights = None if weights is None else self._normalised(dict(weights))
        self.n_items = 0
        self._search_cache = None  # {users' bytes: (members, B, n_items)} while searching

    def _normalised(self, weights: dict[str, float]) -> np.ndarray:
        if set(weights) != set(self.members) or any(w < 0 for w in weights.values()):
            raise ConfigError(f"model.weights needs a non-negative weight for each of "
                              f"{list(self.members)}, got {weights}")  # fmt: skip
        values = np.array([float(weights[name]) for name in self.members])
        if values.sum() <= 0:
            raise ConfigError(f"model.weights must not all be 0, got {weights}")
        return values / values.sum()

    def memory_needed(self, n_users: int, n_items: int, nnz: int) -> dict[str, int]:
        needed = {f"{name}: {what}": size for name, member in self.members.items()
                  for what, size in member.memory_needed(n_users, n_items, nnz).items()}
        if self.weights is None:  # the search's cache, at most SEARCH_CACHE_BYTES
            needed["weight search: members' standardised scores"] = min(
                SEARCH_CACHE_BYTES, 4 * len(self.members) * n_users * n_items)  # fmt: skip
        return needed

    def fit(self, train: sp.csr_matrix) -> Self:
        return self.fit_validated(train)

    def fit_validated(self, train: sp.csr_matrix, validate=None, on_epoch=None) -> Self:
        for name, member in self.members.items():  # before any member trains
            if getattr(member, "uses_timestamps", False) and member.rated_at is None:
                raise ConfigError(f"model.members.{name} needs when each rating was given: "
                                  f"build the ensemble with the data (recsys.config."
                                  f"create_model(..., data=...)), as model= runs do")  # fmt: skip
        self.n_users, self.n_items = train.shape
        self.seen = binary_rows(train)  # each user's training items: left out of standardising
        for member in self.members.values():
            member.fit_validated(train, validate=validate)
        if self.weights is None:
            self.weights = (self._search(validate) if validate is not None
                            else np.full(len(self.members), 1 / len(self.members)))  # fmt: skip
        return self

    def _search(self, validate) -> np.ndarray:
        """The simplex grid point with the best validation objective. Every point ranks the
        same users, so each batch's standardised member scores are computed once
        (``SEARCH_CACHE_BYTES`` of them at most) and only the weighted sum is redone."""
        best, best_value = None, -np.inf
        self._search_cache = {}
        try:
            for weights in simplex_grid(len(self.members), self.weight_step):
                self.weights = weights
                value = validate(self)
                if value > best_value:
                    best, best_value = weights, value
        finally:
            self._search_cache = None
        self.validation_value = best_value
        return best

    def training_summary(self) -> dict[str, float]:
        summary = {f"train/weight/{name}": float(w)
                   for name, w in zip(self.members, self.weights, strict=True)}  # fmt: skip
        for name, member in self.members.items():
            summary |= {f"{key}/{name}": value for key, value in member.training_summary().items()}
        return summary

    def refit_overrides(self) -> dict:
        return {"weights": {name: float(w) for name, w in zip(self.members, self.weights,
                                                             strict=True)},
                "members": {name: member.refit_overrides()
                            for name, member in self.members.items()}}  # fmt: skip

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        blended = np.zeros((len(users), self.n_items), dtype=np.float32)
        cached = self._cached(users)
        counted = self._counted(users) if cached is None else None  # once for every member
        for m, (weight, member) in enumerate(zip(self.weights, self.members.values(),
                                                 strict=True)):  # fmt: skip
            if weight > 0:
                z = cached[m] if cached is not None else _standardised_over(
                    np.asarray(member.score(users), dtype=np.float32), counted)  # fmt: skip
                blended += np.float32(weight) * z
        return blended

    def _counted(self, users: np.ndarray) -> np.ndarray:
        """``(B, n_items)`` booleans: the entries each user's standardising counts."""
        seen = self.seen[users] if self.standardise_over == "unseen" else None
        return _counted((len(users), self.n_items), seen)

    def _cached(self, users: np.ndarray) -> np.ndarray | None:
        """``(members, B, n_items)`` standardised member scores of ``users`` during the weight
        search (computed on first use while the cache has room), else ``None``."""
        if self._search_cache is None:
            return None
        key = users.tobytes()
        if key not in self._search_cache:
            used = sum(z.nbytes for z in self._search_cache.values())
            if used + 4 * len(self.members) * len(users) * self.n_items > SEARCH_CACHE_BYTES:
                return None
            counted = self._counted(users)
            cached = np.empty((len(self.members), len(users), self.n_items), dtype=np.float32)
            for m, member in enumerate(self.members.values()):
                cached[m] = _standardised_over(np.asarray(member.score(users),
                                                          dtype=np.float32), counted)  # fmt: skip
            self._search_cache[key] = cached
        return self._search_cache[key]


def standardised(scores: np.ndarray, left_out: sp.spmatrix | None = None) -> np.ndarray:
    """Each row minus its mean, divided by its standard deviation, both over the row's entries
    outside ``left_out`` (a ``(rows, columns)`` matrix whose stored non-zeros are left out;
    ``None``: none). Rows with no spread there, or nothing left to count, are 0; left-out
    entries are standardised with the rest's mean and spread."""
    scores = np.asarray(scores, dtype=np.float32)
    return _standardised_over(scores, _counted(scores.shape, left_out))


def _counted(shape: tuple[int, int], left_out: sp.spmatrix | None) -> np.ndarray:
    """``shape`` booleans, False where ``left_out`` stores a non-zero."""
    counted = np.ones(shape, dtype=bool)
    if left_out is not None:
        counted[sp.csr_matrix(left_out).nonzero()] = False
    return counted


def _standardised_over(scores: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """``standardised`` with the entries to count given as a boolean mask."""
    count = np.maximum(counted.sum(axis=1, keepdims=True), 1)
    mean = scores.sum(axis=1, where=counted, dtype=np.float64, keepdims=True) / count
    centred = scores - mean.astype(np.float32)
    squares = np.square(centred).sum(axis=1, where=counted, dtype=np.float64, keepdims=True)
    spread = np.sqrt(squares / count).astype(np.float32)
    return np.divide(centred, spread, out=np.zeros_like(scores), where=spread > 0)


def simplex_grid(n: int, step: float) -> list[np.ndarray]:
    """Every weight vector of ``n`` non-negative multiples of ``step`` summing to 1, equal
    weights first (where the grid has them), then in lexicographic order."""
    units = round(1 / step)
    counts = [c for c in itertools.product(range(units + 1), repeat=n) if sum(c) == units]
    points = [np.array(c, dtype=np.float64) / units for c in counts]
    points.sort(key=lambda w: (not np.allclose(w, 1 / n), tuple(-w)))
    return points
