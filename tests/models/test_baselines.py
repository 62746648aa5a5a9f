import numpy as np
import pytest

from recsys.config import create_model
from recsys.errors import ConfigError
from recsys.metrics import evaluate
from tests.models.contract import ModelContract


class TestRandom(ModelContract):
    model_name = "random"
    ndcg_bounds = (0.01, 0.10)  # about 0.045 here: see the expectation test below
    ml100k_ndcg = (0.005, 0.04)

    def test_scores_are_uniform_and_seed_dependent(self, synthetic_matrices):
        train, _, _ = synthetic_matrices
        scores = self.make_model(seed=0).fit(train).score(np.arange(100))
        assert 0.45 < scores.mean() < 0.55 and scores.min() >= 0 and scores.max() < 1
        other = self.make_model(seed=1).fit(train).score(np.arange(100))
        assert not np.array_equal(scores, other)

    def test_ndcg_matches_the_expectation_of_a_random_ranking(self, synthetic_matrices):
        # A uniform ranking of the c_u unseen items hits a relevant one at each rank with
        # probability |R_u| / c_u, so E[DCG@10] = (|R_u| / c_u) * sum_{i<=10} 1 / log2(i + 1).
        train, validation, test = synthetic_matrices
        seen = train + validation
        users = np.flatnonzero(np.diff(test.indptr))
        relevant = np.diff(test.indptr)[users]
        candidates = train.shape[1] - np.diff(seen.indptr)[users]
        discounts = 1 / np.log2(np.arange(2, 12))
        ideal = np.cumsum(discounts)[np.minimum(relevant, 10) - 1]
        expected = np.mean(relevant / candidates * discounts.sum() / ideal)
        ndcgs = [evaluate(self.make_model(seed=s).fit(train), test, seen, [10]).summary["ndcg@10"]
                 for s in range(5)]  # fmt: skip
        assert np.mean(ndcgs) == pytest.approx(expected, rel=0.25)


class TestPopular(ModelContract):
    model_name = "popular"
    ndcg_bounds = (0.07, 0.20)  # random reaches ~0.045; the taste groups cap it
    ml100k_ndcg = (0.22, 0.27)

    def test_ranks_by_training_count(self, fitted, synthetic_matrices):
        train, _, _ = synthetic_matrices
        items, _ = fitted.recommend(np.array([0]), k=5)
        counts = np.asarray(train.sum(axis=0)).ravel()
        np.testing.assert_array_equal(items[0], np.argsort(-counts, kind="stable")[:5])


class TestALS(ModelContract):
    model_name = "als"
    overrides = {"factors": 8, "regularization": 5.0, "alpha": 2.0, "iterations": 10}
    ndcg_bounds = (0.40, 1.0)  # popular reaches ~0.11 here: ALS must use the taste groups
    ml100k_ndcg = (0.40, 1.0)


BAD_ALS = [{"factors": 0}, {"factors": 2.5}, {"factors": "abc"}, {"alpha": -1},
           {"regularization": -0.1}, {"iterations": 0}, {"num_threads": -1}]  # fmt: skip


@pytest.mark.parametrize("overrides", BAD_ALS)
def test_als_rejects_bad_hyperparameters(overrides):
    with pytest.raises(ConfigError, match="model\\."):
        create_model("als", seed=0, overrides=overrides)
