import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recsys.data import to_interactions
from recsys.data.features import item_features, user_features
from recsys.errors import ConfigError
from recsys.metrics import evaluate
from recsys.models import BPRRecommender, GraphSAGERecommender, TwoTowerRecommender
from recsys.models.graphsage import sample_neighborhood
from recsys.split import Split
from recsys.train import train_and_evaluate
from tests.conftest import items_bytes, make_ratings, users_bytes
from tests.models.contract import ModelContract, synthetic_split  # noqa: F401 (fixture)


def read_tsv(data: bytes) -> pd.DataFrame:
    import io

    return pd.read_csv(io.BytesIO(data), sep="\t", dtype={"zip_code": str})


@pytest.fixture(scope="module")
def features():
    users = read_tsv(users_bytes(120))
    items = read_tsv(items_bytes(200))
    items["genres"] = items["genres"].str.split("|")
    return user_features(users), item_features(items)


class TestBPR(ModelContract):
    ndcg_floor = 0.30

    def make_model(self, seed):
        return BPRRecommender(factors=16, epochs=30, lr=0.01, regularization=1e-3, seed=seed,
                              device="cpu", progress=False)  # fmt: skip

    def test_early_stopping_restores_the_best_epoch(self, synthetic_split):  # noqa: F811
        train, validation, _ = synthetic_split
        history = []

        def validate(model):
            return evaluate(model, validation, train, [10]).summary["ndcg@10"]

        model = BPRRecommender(factors=16, epochs=40, lr=0.05, patience=3, seed=0, device="cpu",
                               progress=False)  # fmt: skip
        model.fit(train, validate=validate, on_epoch=lambda e, r: history.append((e, r)))
        values = [record["val"] for _, record in history]
        assert model.epochs_run == len(history) and model.best_epoch == 1 + int(np.argmax(values))
        assert validate(model) == pytest.approx(max(values))
        assert all(record["loss"] > 0 for _, record in history)


class TestGraphSAGE(ModelContract):
    ndcg_floor = 0.30

    def make_model(self, seed):
        return GraphSAGERecommender(dim=16, layers=2, epochs=15, batch_size=512, lr=0.01,
                                    aggregation="symmetric", root_weight=False, seed=seed,
                                    device="cpu", progress=False)  # fmt: skip


class TestGraphSAGESampled(ModelContract):
    ndcg_floor = 0.25

    def make_model(self, seed):
        return GraphSAGERecommender(dim=16, layers=2, mode="neighbor_sampled", fanouts=[5, 5],
                                    epochs=15, batch_size=512, lr=0.01, seed=seed, device="cpu",
                                    progress=False)  # fmt: skip


def test_neighbour_sampler_only_follows_graph_edges():
    graph = sp.csr_matrix(np.array([[0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 1], [0, 0, 1, 0]]))
    indptr = torch.tensor(graph.indptr, dtype=torch.int64)
    indices = torch.tensor(graph.indices, dtype=torch.int64)
    seeds = torch.tensor([1, 3])
    nodes, edges, positions = sample_neighborhood(seeds, indptr, indices, [3, 2],
                                                  torch.Generator().manual_seed(0))  # fmt: skip
    assert nodes[positions].tolist() == [1, 3]
    source, target = nodes[edges[0]], nodes[edges[1]]
    assert all(graph[t, s] for s, t in zip(source.tolist(), target.tolist(), strict=True))


def test_graphsage_never_sees_test_edges(synthetic_split):  # noqa: F811
    train, validation, test = synthetic_split
    ratings = make_ratings(n_users=120, n_items=200, per_user=30, seed=0)
    data = to_interactions(ratings, np.arange(1, 121), np.arange(1, 201))
    rows = data.subset(np.arange(len(data)))

    def as_split(test_matrix):
        def part(matrix):
            coo = matrix.tocoo()
            n = len(coo.row)
            return type(rows)(coo.row.astype(np.int64), coo.col.astype(np.int64),
                              np.ones(n, np.float32), np.zeros(n, np.int64), rows.user_ids,
                              rows.item_ids)  # fmt: skip
        return Split(part(train), part(validation), part(test_matrix), "x")

    rows_, cols = np.arange(50), (np.arange(50) * 7) % 200  # entirely different test edges
    other_test = sp.csr_matrix((np.ones(50, np.float32), (rows_, cols)), shape=test.shape)
    embeddings = []
    for test_matrix in (test, other_test):
        model = GraphSAGERecommender(dim=8, layers=2, epochs=3, seed=0, device="cpu",
                                     progress=False)  # fmt: skip
        train_and_evaluate(model, as_split(test_matrix), [10], 256)
        embeddings.append((model.user_embeddings, model.item_embeddings))
    np.testing.assert_array_equal(embeddings[0][0], embeddings[1][0])
    np.testing.assert_array_equal(embeddings[0][1], embeddings[1][1])


class TestTwoTower(ModelContract):
    ndcg_floor = 0.25

    @pytest.fixture(autouse=True)
    def _features(self, features):
        self.features = features

    def make_model(self, seed):
        users, items = self.features
        return TwoTowerRecommender(users, items, dim=16, epochs=15, batch_size=256, lr=0.005,
                                   seed=seed, device="cpu", progress=False)  # fmt: skip

    def test_bpr_loss_trains_too(self, synthetic_split):  # noqa: F811
        train, validation, test = synthetic_split
        users, items = self.features
        model = TwoTowerRecommender(users, items, dim=16, loss="bpr", epochs=10, lr=0.005,
                                    seed=0, device="cpu", progress=False).fit(train)  # fmt: skip
        assert evaluate(model, test, train + validation, [10]).summary["ndcg@10"] > 0.1

    def test_cold_start_users_are_scored_from_features(self, synthetic_split):  # noqa: F811
        train, _, _ = synthetic_split
        model = self.make_model(seed=0).fit(train)
        users, _ = self.features
        cold = users.rows(np.arange(10))  # scored as unknown IDs, from features alone
        scores = model.score_new_users(cold)
        assert scores.shape == (10, train.shape[1]) and np.isfinite(scores).all()
        popular = np.argsort(-np.asarray(train.sum(axis=0)).ravel(), kind="stable")[:10]
        top = np.argsort(-scores, axis=1)[:, :10]
        overlap = np.mean([len(set(row) & set(popular)) / 10 for row in top.tolist()])
        assert overlap < 1.0
        assert len({tuple(row) for row in top.tolist()}) > 1  # features make lists differ

    def test_needs_features_for_every_user(self, synthetic_split):  # noqa: F811
        train, _, _ = synthetic_split
        users, items = self.features
        model = TwoTowerRecommender(users.rows(np.arange(5)), items, epochs=1, device="cpu")
        with pytest.raises(ConfigError, match="user features"):
            model.fit(train)


@pytest.mark.parametrize("kwargs", [{"device": "tpu"}, {"epochs": 0}, {"lr": 0},
                                    {"patience": -1}])  # fmt: skip
def test_training_settings_are_validated(kwargs):
    with pytest.raises(ConfigError):
        BPRRecommender(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_matches_cpu_quality(synthetic_split):  # noqa: F811
    train, validation, test = synthetic_split
    results = {}
    for device in ("cpu", "cuda"):
        model = BPRRecommender(factors=16, epochs=30, lr=0.01, regularization=1e-3, seed=0,
                               device=device, progress=False).fit(train)  # fmt: skip
        results[device] = evaluate(model, test, train + validation, [10]).summary["ndcg@10"]
    assert results["cuda"] == pytest.approx(results["cpu"], abs=0.05)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        BPRRecommender(device="cuda")
