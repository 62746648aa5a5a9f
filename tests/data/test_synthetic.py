"""``data=synthetic``: MovieLens-shaped random data, seeded, of any size, through the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from recsys.config import compose_config, data_source, load_split
from recsys.data.synthetic import synthetic_movielens
from recsys.errors import ConfigError
from recsys.train import run


def test_sizes_shape_and_types_are_what_was_asked():
    data = synthetic_movielens(users=500, items=2_000, interactions=60_000, seed=3)
    ratings = data.ratings
    assert len(ratings) == 60_000
    assert not ratings.duplicated(["user_id", "item_id"]).any()  # no pair twice
    assert ratings.dtypes.tolist() == [np.int64, np.int64, np.float32, np.int64]  # no objects
    assert data.users["user_id"].tolist() == list(range(1, 501))
    assert data.items["item_id"].tolist() == list(range(1, 2_001))
    assert set(ratings["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    per_user = ratings.groupby("user_id").size()
    assert per_user.min() >= 20 and len(per_user) == 500  # every user, 20 at least
    assert per_user.max() > 5 * per_user.median()  # log-normal activity: a heavy tail
    per_item = ratings.groupby("item_id").size().sort_values(ascending=False)
    assert per_item.iloc[:20].sum() > 0.05 * len(ratings)  # 1 % of the films (ML-100K: 8 %)
    assert per_item.iloc[0] > 10 * per_item.median()  # blockbusters and a long tail (ML-100K: 21x)
    assert data.items["genres"].map(len).eq(1).all()


def test_same_seed_same_rows_and_hash_other_seed_other_rows():
    first = synthetic_movielens(300, 1_000, 20_000, seed=1)
    again = synthetic_movielens(300, 1_000, 20_000, seed=1)
    other = synthetic_movielens(300, 1_000, 20_000, seed=2)
    assert first.ratings.equals(again.ratings) and first.ratings_sha256 == again.ratings_sha256
    assert first.ratings_sha256 != other.ratings_sha256


def test_users_heavier_than_half_the_catalogue_are_capped_and_the_total_kept():
    # 100 users x 50 items: at most 25 each, 2,400 in all: nearly everyone is capped
    data = synthetic_movielens(users=100, items=50, interactions=2_400, seed=0)
    per_user = data.ratings.groupby("user_id").size()
    assert len(data.ratings) == 2_400 and per_user.max() <= 25
    assert not data.ratings.duplicated(["user_id", "item_id"]).any()


@pytest.mark.parametrize(("sizes", "message"), [
    ((0, 10, 10), "data.users must be an integer >= 1, got 0"),
    ((10, 1, 10), "data.items must be an integer >= 2"),
    ((10, 10, 2.5), "data.interactions must be an integer >= 1, got 2.5"),
    ((10, 100, 5), "fewer than data.users=10"),
    ((10, 10, 60), "exceeds half of the 10 x 10 user-item pairs (50): raise data.users"),
])  # fmt: skip
def test_impossible_sizes_are_one_line_config_errors(sizes, message):
    with pytest.raises(ConfigError, match="^[^\n]*$") as caught:
        synthetic_movielens(*sizes)
    assert message in str(caught.value)


def test_a_run_on_synthetic_data_trains_evaluates_and_names_its_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = ["data=synthetic", "data.users=400", "data.items=600", "data.interactions=30000",
                 "model=als", "tracking.enabled=false", "cache.enabled=false"]  # fmt: skip
    cfg = compose_config(overrides)
    split = load_split(cfg).split
    assert sum(split.sizes().values()) == 30_000
    assert data_source(cfg.data) == "synthetic: users=400 items=600 interactions=30000 seed=0"
    metrics = run(cfg)
    assert metrics["test/ndcg@10"] > 0
    assert not list(tmp_path.iterdir()) or not (tmp_path / "data").exists()  # nothing downloaded


def test_a_tracked_run_on_synthetic_data_logs_its_generator_as_the_source(tmp_path, monkeypatch,
                                                                         mlflow_uri):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    run(compose_config(["data=synthetic", "data.users=300", "data.items=500",
                        "data.interactions=20000", "model=popular", f"tracking.uri={mlflow_uri}",
                        "cache.enabled=false"]))  # fmt: skip
    client = MlflowClient(mlflow_uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "synthetic"]
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED"
    assert "machine.data.dir" not in logged.data.tags  # no folder: nothing was read
    (dataset,) = [d.dataset for d in logged.inputs.dataset_inputs if d.dataset.name == "synthetic"]
    assert dataset.source == "synthetic: users=300 items=500 interactions=20000 seed=0"
