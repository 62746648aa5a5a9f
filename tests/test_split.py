import numpy as np
import pytest

from recsys.data import to_interactions
from recsys.errors import ConfigError
from recsys.split import (
    ColdUserSplit,
    LeaveLastKSplit,
    LeaveOneOutSplit,
    RandomRatioSplit,
    TemporalSplit,
)
from tests.conftest import make_ratings

SPLITTERS = [RandomRatioSplit(0.25, 0.1), TemporalSplit(0.2, 0.1), LeaveLastKSplit(k=2, val_k=1),
             LeaveOneOutSplit(), ColdUserSplit(user_ratio=0.1, val_ratio=0.1)]  # fmt: skip


@pytest.fixture(scope="module")
def interactions():
    ratings = make_ratings(n_users=80, n_items=150, per_user=25, seed=3)
    ratings = ratings.sample(frac=1.0, random_state=1)  # input order must not matter
    return to_interactions(ratings, np.arange(1, 81), np.arange(1, 151))


def rows(part):
    return set(zip(part.user.tolist(), part.item.tolist(), strict=True))


@pytest.mark.parametrize("splitter", SPLITTERS, ids=lambda s: type(s).__name__)
def test_parts_are_disjoint_and_complete(splitter, interactions):
    split = splitter(interactions, seed=0)
    train, val, test = rows(split.train), rows(split.validation), rows(split.test)
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train) + len(val) + len(test) == len(interactions)
    assert len(val) > 0 and len(test) > 0


@pytest.mark.parametrize("splitter", SPLITTERS, ids=lambda s: type(s).__name__)
def test_same_seed_same_fingerprint_other_seed_other(splitter, interactions):
    first, again = splitter(interactions, seed=5), splitter(interactions, seed=5)
    assert first.fingerprint == again.fingerprint
    assert rows(first.test) == rows(again.test)
    if not isinstance(splitter, (TemporalSplit, LeaveLastKSplit)):  # those draw nothing
        assert splitter(interactions, seed=6).fingerprint != first.fingerprint


def test_fingerprint_ignores_row_order(interactions):
    order = np.random.default_rng(0).permutation(len(interactions))
    shuffled = interactions.subset(order)
    split = LeaveLastKSplit(k=2, val_k=1)
    assert split(shuffled, seed=0).fingerprint == split(interactions, seed=0).fingerprint


def test_random_ratio_is_stratified_per_user(interactions):
    split = RandomRatioSplit(test_ratio=0.25, val_ratio=0.2)(interactions, seed=0)
    per_user = np.bincount(interactions.user, minlength=80)
    test = np.bincount(split.test.user, minlength=80)
    val = np.bincount(split.validation.user, minlength=80)
    np.testing.assert_array_equal(test, np.floor(0.25 * per_user + 0.5))
    np.testing.assert_array_equal(val, np.floor(0.2 * (per_user - test) + 0.5))


def test_cold_users_are_held_out_whole_and_never_trained_on(interactions):
    split = ColdUserSplit(user_ratio=0.1, val_ratio=0.2)(interactions, seed=0)
    cold = set(split.test.user.tolist())
    assert len(cold) == 8  # round(0.1 * 80)
    assert not cold & (set(split.train.user.tolist()) | set(split.validation.user.tolist()))
    per_user = np.bincount(interactions.user, minlength=80)
    np.testing.assert_array_equal(np.bincount(split.test.user, minlength=80)[list(cold)],
                                  per_user[list(cold)])  # fmt: skip
    warm = np.setdiff1d(np.arange(80), list(cold))
    val = np.bincount(split.validation.user, minlength=80)
    np.testing.assert_array_equal(val[warm], np.floor(0.2 * per_user[warm] + 0.5))


def test_every_user_keeps_a_training_interaction():
    ratings = make_ratings(n_users=30, n_items=40, per_user=2, seed=0)
    data = to_interactions(ratings, np.arange(1, 31), np.arange(1, 41))
    for splitter in (RandomRatioSplit(test_ratio=0.9, val_ratio=0.9), LeaveOneOutSplit(),
                     LeaveLastKSplit(k=5, val_k=5)):  # fmt: skip
        split = splitter(data, seed=0)
        assert set(split.train.user.tolist()) == set(range(30))


def test_leave_last_k_holds_out_each_users_latest(interactions):
    split = LeaveLastKSplit(k=2, val_k=1)(interactions, seed=0)
    for part_earlier, part_later in ((split.train, split.validation),
                                     (split.validation, split.test)):  # fmt: skip
        latest = np.full(80, -1)
        np.maximum.at(latest, part_earlier.user, part_earlier.timestamp)
        earliest = np.full(80, np.iinfo(np.int64).max)
        np.minimum.at(earliest, part_later.user, part_later.timestamp)
        assert (latest <= earliest).all()
    assert (np.bincount(split.test.user, minlength=80) == 2).all()


def test_temporal_split_holds_out_the_latest_rows(interactions):
    split = TemporalSplit(test_ratio=0.2, val_ratio=0.1)(interactions, seed=0)
    assert split.train.timestamp.max() <= split.validation.timestamp.min()
    assert split.validation.timestamp.max() <= split.test.timestamp.min()
    assert len(split.test) == round(0.2 * len(interactions))


@pytest.mark.parametrize("kwargs", [{"test_ratio": 0}, {"test_ratio": 1.0}, {"val_ratio": -0.1}])
def test_bad_ratios_are_config_errors(kwargs):
    with pytest.raises(ConfigError, match="split"):
        RandomRatioSplit(**({"test_ratio": 0.25, "val_ratio": 0.1} | kwargs))


def test_min_rating_keeps_only_positives():
    ratings = make_ratings(n_users=10, n_items=20, per_user=10, seed=0)
    data = to_interactions(ratings, np.arange(1, 11), np.arange(1, 21), min_rating=4)
    assert len(data) == (ratings.rating >= 4).sum()
    assert data.n_users == 10 and data.n_items == 20
    frame = data.to_frame()
    assert (frame.rating >= 4).all()
    assert set(frame.user_id) <= set(range(1, 11))
