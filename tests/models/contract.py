"""The contract every model meets; a model's test class only supplies ``make_model``."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.data import to_interactions
from recsys.metrics import evaluate
from recsys.split import RandomRatioSplit
from tests.conftest import make_ratings


@pytest.fixture(scope="session")
def synthetic_split():
    ratings = make_ratings(n_users=120, n_items=200, per_user=30, seed=0)
    data = to_interactions(ratings, np.arange(1, 121), np.arange(1, 201))
    split = RandomRatioSplit(test_ratio=0.25, val_ratio=0.1)(data, seed=0)
    return split.train.to_csr(), split.validation.to_csr(), split.test.to_csr()


class ModelContract:
    """Shapes, seen items filtered, batch == single user, determinism, a loose NDCG floor."""

    ndcg_floor = 0.0  # test NDCG@10 the model must reach on the synthetic split

    def make_model(self, seed: int):
        raise NotImplementedError

    @pytest.fixture
    def fitted(self, synthetic_split):
        train, _, _ = synthetic_split
        return self.make_model(seed=1).fit(train)

    def test_scores_have_one_row_per_user(self, fitted, synthetic_split):
        train, _, _ = synthetic_split
        scores = fitted.score(np.array([0, 5, 7]))
        assert scores.shape == (3, train.shape[1])
        assert np.isfinite(scores).all()

    def test_recommend_shapes_and_order(self, fitted):
        items, scores = fitted.recommend(np.arange(10), k=15)
        assert items.shape == scores.shape == (10, 15)
        assert items.dtype == np.int64
        assert (np.diff(scores, axis=1) <= 0).all()
        assert all(len(set(row)) == 15 for row in items.tolist())

    def test_seen_items_are_never_recommended(self, fitted, synthetic_split):
        train, _, _ = synthetic_split
        users = np.arange(train.shape[0])
        items, _ = fitted.recommend(users, k=20, exclude=train)
        seen = train[users[:, None], items].toarray()  # (U, 20) 1 where recommended and seen
        assert not seen.any()

    def test_batches_give_the_same_result_as_single_users(self, fitted, synthetic_split):
        train, _, _ = synthetic_split
        users = np.array([3, 0, 50, 7])
        batch, batch_scores = fitted.recommend(users, k=10, exclude=train, batch_size=3)
        for row, user in enumerate(users):
            single, single_scores = fitted.recommend(np.array([user]), k=10, exclude=train)
            np.testing.assert_array_equal(single[0], batch[row])
            np.testing.assert_allclose(single_scores[0], batch_scores[row], rtol=1e-5)

    def test_same_seed_same_output(self, synthetic_split):
        train, _, _ = synthetic_split
        users = np.arange(train.shape[0])
        first = self.make_model(seed=3).fit(train).score(users)
        second = self.make_model(seed=3).fit(train).score(users)
        np.testing.assert_array_equal(first, second)

    def test_embeddings_reproduce_the_scores(self, fitted):
        if fitted.user_embeddings is None:
            assert fitted.item_embeddings is None
            return
        users = np.arange(5)
        np.testing.assert_allclose(
            fitted.user_embeddings[users] @ fitted.item_embeddings.T,
            fitted.score(users), rtol=1e-4, atol=1e-5,
        )  # fmt: skip

    def test_reaches_the_ndcg_floor(self, fitted, synthetic_split):
        train, validation, test = synthetic_split
        result = evaluate(fitted, test, train + validation, ks=[10])
        assert result.summary["ndcg@10"] >= self.ndcg_floor
