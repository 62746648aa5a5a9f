"""``recsys.memory``: what a fit needs, stated by each model, and the refusal before training."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from mlflow.tracking import MlflowClient

from recsys.config import compose_config, create_model, model_names
from recsys.errors import ConfigError
from recsys.memory import GIB, check_fits, fit_need, ranking_need
from recsys.train import run


def binary(n_users, n_items, density=0.05, seed=0):
    matrix = sp.random(n_users, n_items, density=density, format="csr", random_state=seed,
                       dtype=np.float32)  # fmt: skip
    matrix.data[:] = 1.0
    return matrix


def test_ease_needs_four_square_float64_arrays_and_the_rest_by_hand():
    train = binary(50, 40)
    need = fit_need(create_model("ease", seed=0), train, batch_size=16)
    matrix_bytes = train.data.nbytes + train.indices.nbytes + train.indptr.nbytes
    assert need.parts == {
        "training matrix": matrix_bytes,
        "ranking 16 users at once": 2 * 16 * 40 * 4,
        "Gram matrix (n_items^2 float64)": 40 * 40 * 8,
        "its inversion (3 more such arrays)": 3 * 40 * 40 * 8,
        "training matrix in float64": train.nnz * 12,
    }
    assert need.total == sum(need.parts.values())


@pytest.mark.parametrize("name", [n for n in model_names() if n not in ("two_tower",)])
def test_every_model_states_its_memory_in_whole_bytes(name):
    model = create_model(name, seed=0)
    parts = model.memory_needed(1_000, 500, 20_000)
    assert all(isinstance(size, int) and size >= 0 for size in parts.values()), parts
    assert fit_need(model, binary(1_000, 500), 64).total > ranking_need(64, 500)


def test_an_ensemble_that_searches_its_weights_counts_the_search_cache():
    from recsys.models import ensemble

    key = "weight search: members' standardised scores"
    assert key not in create_model("ensemble", seed=0).memory_needed(1_000, 500, 20_000)
    searching = create_model("ensemble", seed=0, overrides={"weights": None})
    assert searching.memory_needed(1_000, 500, 20_000)[key] == 4 * 4 * 1_000 * 500  # 4 members
    assert searching.memory_needed(10**6, 10**5, 1)[key] == ensemble.SEARCH_CACHE_BYTES


def test_ml32m_sized_ease_refuses_with_its_need_and_the_fix():
    train = sp.csr_matrix((1, 87_585), dtype=np.float32)  # the shape is what counts
    with pytest.raises(ConfigError) as caught:
        check_fits(create_model("ease", seed=0), "ease", train, 1024, memory_gb=24)
    line = str(caught.value)
    assert "\n" not in line
    assert "model ease on 1 users x 87,585 items" in line
    assert "needs about 229.3 GiB (its inversion (3 more such arrays) 171.5 GiB + Gram" in line
    assert "more than memory_gb=24: choose a model that scales with the interactions" in line


def test_a_factor_model_fits_where_ease_does_not():
    train = sp.csr_matrix((200_000, 87_585), dtype=np.float32)
    need = check_fits(create_model("als", seed=0), "als", train, 1024, memory_gb=24)
    assert need.total < 2 * GIB


def test_a_run_refuses_before_training_and_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose_config(["data=synthetic", "data.users=300", "data.items=3000",
                          "data.interactions=20000", "model=ease", "memory_gb=0.1",
                          "tracking.enabled=false", "cache.enabled=false"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"model ease on 300 users x 3,000 items .* more than "
                                          r"memory_gb=0.1"):  # fmt: skip
        run(cfg)


def test_memory_gb_must_be_a_positive_number(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose_config(["memory_gb=-1", "tracking.enabled=false"])
    with pytest.raises(ConfigError, match="memory_gb=-1: expected null"):
        run(cfg)


def test_neighbour_sampled_graphsage_does_not_count_full_graph_layers():
    full = create_model("graphsage", seed=0).memory_needed(10_000, 5_000, 1_000_000)
    sampled = create_model("graphsage", seed=0, overrides={"mode": "neighbor_sampled"})
    parts = sampled.memory_needed(10_000, 5_000, 1_000_000)
    assert set(full) - set(parts) == {"node vectors of 4 layers, kept for backward"}
    assert sum(parts.values()) < sum(full.values())


def test_a_tracked_run_refuses_before_its_mlflow_run_exists(tmp_path, monkeypatch, mlflow_uri):
    monkeypatch.chdir(tmp_path)
    cfg = compose_config(["data=synthetic", "data.users=300", "data.items=3000",
                          "data.interactions=20000", "model=ease", "memory_gb=0.1",
                          f"tracking.uri={mlflow_uri}", "cache.enabled=false"])  # fmt: skip
    with pytest.raises(ConfigError, match="more than memory_gb=0.1"):
        run(cfg)
    client = MlflowClient(mlflow_uri)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])
