"""The contract every model meets. A model's test class names its config file and what it must
reach; the model is built from ``conf/model/<model_name>.yaml`` (plus small-data overrides) and
fitted once per class.

Adding a model is three files: ``recsys/models/<name>.py``, ``conf/model/<name>.yaml`` and a
``ModelContract`` subclass here in ``tests/models/``. The configs test, the integration tests
(real ML-100K, default config), the benchmark and the report find it from there.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import ClassVar

import numpy as np
import pytest

from recsys.config import create_model
from recsys.metrics import evaluate
from tests.conftest import synthetic_movielens, synthetic_split

CONTRACTS: dict[str, type[ModelContract]] = {}  # model name -> its test class


class ModelContract:
    """Shapes, seen items filtered, batch == single user, determinism, embeddings that give the
    scores, and test NDCG@10 within bounds on the synthetic split."""

    model_name: ClassVar[str]  # conf/model/<model_name>.yaml
    overrides: ClassVar[dict] = {}  # on top of that file, for the small synthetic data
    ndcg_bounds: ClassVar[tuple[float, float]]  # test NDCG@10 on the synthetic split
    ml100k_ndcg: ClassVar[tuple[float, float]]  # test NDCG@10 of the default config, ML-100K
    # iterative models: a short run for the default suite (the full run is a `slow` test), and
    # the test NDCG@10 that the short run must reach on ML-100K
    ml100k_quick: ClassVar[dict | None] = None
    ml100k_quick_ndcg: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        CONTRACTS[cls.model_name] = cls

    @classmethod
    def make_model(cls, seed: int, **overrides):
        return create_model(cls.model_name, seed=seed, overrides=cls.overrides | overrides,
                            data=synthetic_movielens())  # fmt: skip

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls):
        """The model fitted on the synthetic training part, seed 1 (once per session)."""
        return fitted_model(cls.model_name)

    def test_scores_have_one_row_per_user(self, fitted, synthetic_matrices):
        train, _, _ = synthetic_matrices
        scores = fitted.score(np.array([0, 5, 7]))
        assert scores.shape == (3, train.shape[1])
        assert np.isfinite(scores).all()

    def test_recommend_shapes_and_order(self, fitted):
        items, scores = fitted.recommend(np.arange(10), k=15)
        assert items.shape == scores.shape == (10, 15)
        assert items.dtype == np.int64
        assert (np.diff(scores, axis=1) <= 0).all()
        assert all(len(set(row)) == 15 for row in items.tolist())

    def test_seen_items_are_never_recommended(self, fitted, synthetic_matrices):
        train, _, _ = synthetic_matrices
        users = np.arange(train.shape[0])
        items, _ = fitted.recommend(users, k=20, exclude=train)
        seen = train[users[:, None], items].toarray()  # (U, 20) 1 where recommended and seen
        assert not seen.any()

    def test_batches_give_the_same_result_as_single_users(self, fitted, synthetic_matrices):
        train, _, _ = synthetic_matrices
        users = np.array([3, 0, 50, 7])
        batch, batch_scores = fitted.recommend(users, k=10, exclude=train, batch_size=3)
        for row, user in enumerate(users):
            single, single_scores = fitted.recommend(np.array([user]), k=10, exclude=train)
            np.testing.assert_array_equal(single[0], batch[row])
            np.testing.assert_allclose(single_scores[0], batch_scores[row], rtol=1e-5)

    def test_same_seed_same_output(self, fitted, synthetic_matrices):
        train, _, _ = synthetic_matrices
        users = np.arange(train.shape[0])
        again = self.make_model(seed=1).fit(train)
        np.testing.assert_array_equal(again.score(users), fitted.score(users))

    def test_embeddings_reproduce_the_scores(self, fitted):
        if fitted.user_embeddings is None:
            assert fitted.item_embeddings is None
            return
        users = np.arange(5)
        np.testing.assert_allclose(
            fitted.user_embeddings[users] @ fitted.item_embeddings.T,
            fitted.score(users), rtol=1e-4, atol=1e-5,
        )  # fmt: skip

    def test_test_ndcg_within_bounds(self, fitted, synthetic_matrices):
        train, validation, test = synthetic_matrices
        ndcg = evaluate(fitted, test, train + validation, ks=[10]).summary["ndcg@10"]
        low, high = self.ndcg_bounds
        assert low <= ndcg <= high


@functools.cache
def fitted_model(name: str):
    """Model ``name`` as its test class configures it, fitted once on the synthetic training
    part with seed 1 (shared by the contract and the golden tests; never modify it)."""
    return contract_for(name).make_model(seed=1).fit(synthetic_split().train.to_csr())


def contract_for(name: str) -> type[ModelContract]:
    """The test class of model ``name`` (importing every test module of ``tests/models``)."""
    import tests.models

    for module in pkgutil.iter_modules(tests.models.__path__):
        if module.name.startswith("test_"):
            importlib.import_module(f"tests.models.{module.name}")
    try:
        return CONTRACTS[name]
    except KeyError:
        raise LookupError(f"model {name!r} has no ModelContract class in tests/models/") from None
