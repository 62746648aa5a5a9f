"""Split interactions into train, validation and test, seeded and fingerprinted.

Every splitter holds out test rows from all interactions, then validation rows from what is
left, with the same rule: validation is a carve-out of the training part and never touches test.
A user keeps at least one training interaction whenever they have any, so every evaluated user
has history to rank from; the one exception is ``ColdUserSplit``, whose test users are unseen
on purpose.

The fingerprint is a SHA-256 of the exact rows of each part (original ids, rating, timestamp,
in a canonical order), so the same data and seed give the same fingerprint on any machine.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from recsys.data import Interactions
from recsys.errors import ConfigError
from recsys.rng import SeedLike, make_rng

PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class Split:
    """Disjoint train / validation / test parts of one set of interactions."""

    train: Interactions
    validation: Interactions
    test: Interactions
    fingerprint: str

    def sizes(self) -> dict[str, int]:
        return {part: len(getattr(self, part)) for part in PARTS}


class Splitter(ABC):
    """Holds out test rows, then validation rows from the rest, by one rule."""

    def __call__(self, data: Interactions, seed: SeedLike) -> Split:
        rng = make_rng(seed)
        is_test = self._holdout(data, rng, validation=False)
        rest = np.flatnonzero(~is_test)
        is_validation = np.zeros(len(data), dtype=bool)
        is_validation[rest] = self._holdout(data.subset(rest), rng, validation=True)
        parts = {
            "train": data.subset(~is_test & ~is_validation),
            "validation": data.subset(is_validation),
            "test": data.subset(is_test),
        }
        return Split(**parts, fingerprint=split_fingerprint(parts))

    @abstractmethod
    def _holdout(self, data: Interactions, rng: np.random.Generator, validation: bool):
        """Boolean mask (len(data),) of the rows to hold out."""

    @abstractmethod
    def describe(self) -> str:
        """The protocol in words, for reports ("per-user stratified random split: ...")."""


class RandomRatioSplit(Splitter):
    """Per-user stratified random split.

    Each user's interactions are shuffled and ``round(test_ratio * n_u)`` of them go to test
    (at most ``n_u - 1``); then ``round(val_ratio * n'_u)`` of the remaining ``n'_u`` go to
    validation. The default 75/25 is Microsoft Recommenders' MovieLens benchmark protocol.
    """

    def __init__(self, test_ratio: float, val_ratio: float):
        self.test_ratio = _check_ratio("split.test_ratio", test_ratio, allow_zero=False)
        self.val_ratio = _check_ratio("split.val_ratio", val_ratio)

    def describe(self) -> str:
        return (f"per-user stratified random split: {_percent(self.test_ratio)} of each user's "
                f"interactions to test, {_validation(f'{_percent(self.val_ratio)} of the rest')}")

    def _holdout(self, data, rng, validation):
        ratio = self.val_ratio if validation else self.test_ratio
        counts = np.bincount(data.user, minlength=data.n_users)
        n_holdout = np.floor(ratio * counts + 0.5).astype(np.int64)
        return _hold_out_last(data.user, rng.random(len(data)), n_holdout)


class LeaveOneOutSplit(Splitter):
    """Per user, one random interaction to test and one to validation (users with 2+ rows)."""

    def describe(self) -> str:
        return "leave-one-out: one random interaction of each user to test, one to validation"

    def _holdout(self, data, rng, validation):
        return _hold_out_last(data.user, rng.random(len(data)), np.ones(data.n_users, np.int64))


class LeaveLastKSplit(Splitter):
    """Per user, the ``k`` latest interactions to test, then the ``val_k`` latest to validation.

    Ties in time are broken by item index, so the split is deterministic.
    """

    def __init__(self, k: int, val_k: int):
        self.k = _check_count("split.k", k, allow_zero=False)
        self.val_k = _check_count("split.val_k", val_k)

    def describe(self) -> str:
        rest = f"the {self.val_k} latest of the rest" if self.val_k else ""
        return (f"per-user temporal split: each user's {self.k} latest interaction(s) to test, "
                f"{_validation(rest)}")

    def _holdout(self, data, rng, validation):
        k = self.val_k if validation else self.k
        key = data.timestamp * data.n_items + data.item  # time, then item: a total order
        return _hold_out_last(data.user, key, np.full(data.n_users, k, np.int64))


class TemporalSplit(Splitter):
    """Global temporal split: the latest ``test_ratio`` of all interactions go to test.

    Then the latest ``val_ratio`` of the rest go to validation. Users whose whole history is
    late appear only in validation/test (cold users), as in a real deployment.
    """

    def __init__(self, test_ratio: float, val_ratio: float):
        self.test_ratio = _check_ratio("split.test_ratio", test_ratio, allow_zero=False)
        self.val_ratio = _check_ratio("split.val_ratio", val_ratio)

    def describe(self) -> str:
        rest = f"the latest {_percent(self.val_ratio)} of the rest" if self.val_ratio else ""
        return (f"global temporal split: the latest {_percent(self.test_ratio)} of all "
                f"interactions to test, {_validation(rest)}")

    def _holdout(self, data, rng, validation):
        ratio = self.val_ratio if validation else self.test_ratio
        order = np.lexsort((data.item, data.user, data.timestamp))
        n_holdout = int(np.floor(ratio * len(data) + 0.5))
        mask = np.zeros(len(data), dtype=bool)
        mask[order[len(data) - n_holdout :]] = True
        return mask


class ColdUserSplit(Splitter):
    """Users never seen: a seeded ``user_ratio`` of the users, with all their interactions, to
    test; then ``val_ratio`` of each remaining user's interactions to validation (as
    ``RandomRatioSplit``).

    The one splitter that leaves test users without training rows, by design: it is the
    cold-start protocol (``python -m recsys.cold_start``), where a test user is scored from
    their demographics or from a few ratings revealed at prediction time.
    """

    def __init__(self, user_ratio: float, val_ratio: float):
        self.user_ratio = _check_ratio("split.user_ratio", user_ratio, allow_zero=False)
        self.val_ratio = _check_ratio("split.val_ratio", val_ratio)

    def describe(self) -> str:
        return (f"cold users: {_percent(self.user_ratio)} of the users, with all their "
                f"interactions, to test, "
                f"{_validation(f'{_percent(self.val_ratio)} of each other user')}")

    def _holdout(self, data, rng, validation):
        counts = np.bincount(data.user, minlength=data.n_users)
        if validation:
            n_holdout = np.floor(self.val_ratio * counts + 0.5).astype(np.int64)
            return _hold_out_last(data.user, rng.random(len(data)), n_holdout)
        active = np.flatnonzero(counts)
        # at least one user goes cold and at least one stays to train on
        n_cold = min(max(int(np.floor(self.user_ratio * len(active) + 0.5)), 1), len(active) - 1)
        cold = np.zeros(data.n_users, dtype=bool)
        cold[rng.choice(active, size=n_cold, replace=False)] = True
        return cold[data.user]


def _hold_out_last(user: np.ndarray, key: np.ndarray, n_holdout: np.ndarray) -> np.ndarray:
    """Mask the ``n_holdout[u]`` rows with the largest ``key`` of each user ``u``.

    At most ``n_u - 1`` rows of a user are held out, so each user keeps one row.
    """
    n = len(user)
    counts = np.bincount(user, minlength=len(n_holdout))
    n_holdout = np.minimum(n_holdout, np.maximum(counts - 1, 0))
    order = np.lexsort((key, user))  # by user, then key ascending
    sorted_user = user[order]
    starts = np.cumsum(counts) - counts
    rank_from_end = counts[sorted_user] - (np.arange(n) - starts[sorted_user])  # (n,) 1..n_u
    mask = np.zeros(n, dtype=bool)
    mask[order] = rank_from_end <= n_holdout[sorted_user]
    return mask


def split_fingerprint(parts: dict[str, Interactions]) -> str:
    """SHA-256 over the rows of each part, in canonical order, as little-endian bytes."""
    digest = hashlib.sha256()
    for name in PARTS:
        part = parts[name]
        user_id = part.user_ids[part.user].astype("<i8")
        item_id = part.item_ids[part.item].astype("<i8")
        order = np.lexsort((part.timestamp, item_id, user_id))
        digest.update(f"{name}:{len(part)}\n".encode())
        for column in (user_id, item_id, part.rating.astype("<f4"), part.timestamp.astype("<i8")):
            digest.update(np.ascontiguousarray(column[order]).tobytes())
    return digest.hexdigest()


def _percent(ratio: float) -> str:
    return f"{100 * ratio:g} %"


def _validation(held_out: str) -> str:
    """``"then <held_out> to validation"``; an empty ``held_out`` or a zero share: none."""
    if not held_out or held_out.startswith("0 %"):
        return "no validation part"
    return f"then {held_out} to validation"


def _check_ratio(name: str, value: float, allow_zero: bool = True) -> float:
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        bound = "[0, 1)" if allow_zero else "(0, 1)"
        raise ConfigError(f"{name} must be in {bound}, got {value!r}")
    return float(value)


def _check_count(name: str, value: int, allow_zero: bool = True) -> int:
    if int(value) != value or value < (0 if allow_zero else 1):
        raise ConfigError(f"{name} must be an integer >= {0 if allow_zero else 1}, got {value!r}")
    return int(value)
