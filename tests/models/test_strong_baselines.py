import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import ConfigError
from recsys.models import EASERecommender, ItemKNNRecommender
from recsys.models.itemknn import _keep_top_k
from tests.models.contract import ModelContract, synthetic_split  # noqa: F401 (fixture)


class TestEASE(ModelContract):
    ndcg_floor = 0.30

    def make_model(self, seed):
        return EASERecommender(regularization=50.0, seed=seed)

    def test_matches_the_closed_form(self, synthetic_split):  # noqa: F811
        train, _, _ = synthetic_split
        model = self.make_model(seed=0).fit(train)
        x = train.toarray().astype(np.float64)
        p = np.linalg.inv(x.T @ x + 50.0 * np.eye(x.shape[1]))
        b = np.eye(x.shape[1]) - p / np.diag(p)  # Steck's B = I - P diagMat(1/diag(P))
        np.testing.assert_allclose(model.score(np.arange(5)), x[:5] @ b, rtol=1e-3, atol=1e-4)


class TestItemKNN(ModelContract):
    ndcg_floor = 0.25

    def make_model(self, seed):
        return ItemKNNRecommender(neighbors=50, shrinkage=10.0, block_size=64, seed=seed)

    def test_blocks_do_not_change_the_result(self, synthetic_split):  # noqa: F811
        train, _, _ = synthetic_split
        small = ItemKNNRecommender(neighbors=20, block_size=7).fit(train).score(np.arange(9))
        large = ItemKNNRecommender(neighbors=20, block_size=10_000).fit(train).score(np.arange(9))
        np.testing.assert_allclose(small, large, rtol=1e-5)

    def test_similarity_is_shrunk_cosine_with_top_k(self):
        x = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=np.float32))
        model = ItemKNNRecommender(neighbors=1, shrinkage=1.0).fit(x)
        # items 0,1 share 2 users: 2/(sqrt(2*3)+1); items 1,2 share 2: 2/(sqrt(3*2)+1)
        expected = 2 / (np.sqrt(6) + 1)
        similarity = model._similarity.toarray()
        assert similarity[0, 1] == pytest.approx(expected) and similarity[0, 2] == 0
        assert (similarity > 0).sum(axis=1).tolist() == [1, 1, 1]

    def test_keep_top_k_drops_non_positive(self):
        kept = _keep_top_k(np.array([[0.0, 0.5, -1.0, 0.2]]), 3).toarray()
        np.testing.assert_allclose(kept, [[0.0, 0.5, 0.0, 0.2]])


@pytest.mark.parametrize(("model", "kwargs"), [(EASERecommender, {"regularization": 0}),
                                               (ItemKNNRecommender, {"neighbors": 0}),
                                               (ItemKNNRecommender, {"shrinkage": -1})])
def test_bad_hyperparameters(model, kwargs):
    with pytest.raises(ConfigError):
        model(**kwargs)
