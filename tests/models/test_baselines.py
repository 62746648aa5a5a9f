import numpy as np
import pytest

from recsys.errors import ConfigError
from recsys.models import ALSRecommender, PopularRecommender, RandomRecommender
from tests.models.contract import ModelContract, synthetic_split  # noqa: F401 (fixture)


class TestRandom(ModelContract):
    ndcg_floor = 0.0

    def make_model(self, seed):
        return RandomRecommender(seed=seed)

    def test_scores_are_uniform_and_seed_dependent(self, synthetic_split):  # noqa: F811
        train, _, _ = synthetic_split
        scores = self.make_model(seed=0).fit(train).score(np.arange(100))
        assert 0.45 < scores.mean() < 0.55 and scores.min() >= 0 and scores.max() < 1
        other = self.make_model(seed=1).fit(train).score(np.arange(100))
        assert not np.array_equal(scores, other)


class TestPopular(ModelContract):
    ndcg_floor = 0.07  # random reaches ~0.045

    def make_model(self, seed):
        return PopularRecommender(seed=seed)

    def test_ranks_by_training_count(self, synthetic_split):  # noqa: F811
        train, _, _ = synthetic_split
        model = self.make_model(seed=0).fit(train)
        items, _ = model.recommend(np.array([0]), k=5)
        counts = np.asarray(train.sum(axis=0)).ravel()
        np.testing.assert_array_equal(items[0], np.argsort(-counts, kind="stable")[:5])


class TestALS(ModelContract):
    ndcg_floor = 0.30  # popular reaches ~0.11 here: ALS must use the taste groups

    def make_model(self, seed):
        return ALSRecommender(factors=8, regularization=5.0, alpha=2.0, iterations=10, seed=seed)


BAD_ALS = [{"factors": 0}, {"factors": 2.5}, {"factors": "abc"}, {"alpha": -1},
           {"regularization": -0.1}, {"iterations": 0}]  # fmt: skip


@pytest.mark.parametrize("kwargs", BAD_ALS)
def test_als_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ConfigError, match="model\\."):
        ALSRecommender(**kwargs)
