"""The fitted-model cache: a rerun trains nothing and says so, any change retrains, the folder
stays bounded and holds only whole entries."""

from __future__ import annotations

import os
import threading

import pytest
from mlflow.tracking import MlflowClient

from recsys import cache as cache_module
from recsys.cache import ModelCache, cache_key
from recsys.config import compose_config
from recsys.models.ease import EASERecommender
from recsys.train import run
from tests.conftest import SYNTHETIC


def config(data_dir, uri, *overrides):
    return compose_config([f"data.dir={data_dir}", f"data.name={SYNTHETIC}", f"tracking.uri={uri}",
                           "tracking.experiment=cache", *overrides])  # fmt: skip


def tags(uri):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("cache")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])
    return [r.data.tags for r in runs]


def test_a_rerun_trains_nothing_and_says_so(synthetic_data, mlflow_uri, monkeypatch, capsys):
    first = run(config(synthetic_data, mlflow_uri, "model=ease"))

    def no_fit(self, train):
        raise AssertionError("the second run fitted a model")

    monkeypatch.setattr(EASERecommender, "fit", no_fit)
    second = run(config(synthetic_data, mlflow_uri, "model=ease"))
    assert {k: v for k, v in second.items() if "time/" not in k} == \
        {k: v for k, v in first.items() if "time/" not in k}
    assert "fitted models from the cache: nothing trained" in capsys.readouterr().out
    assert [t["cache.hit"] for t in tags(mlflow_uri)] == ["false", "true"]
    assert len({t["cache.key"] for t in tags(mlflow_uri)}) == 1


def test_any_change_retrains(synthetic_data, mlflow_uri):
    base = config(synthetic_data, mlflow_uri, "model=ease")
    key = cache_key(base, "data", "split")
    assert cache_key(config(synthetic_data, mlflow_uri, "model=ease", "model.regularization=9"),
                     "data", "split") != key  # fmt: skip
    assert cache_key(config(synthetic_data, mlflow_uri, "model=ease", "seed=1"),
                     "data", "split") != key  # fmt: skip
    assert cache_key(base, "other data", "split") != key
    assert cache_key(base, "data", "other split") != key
    assert cache_key(config(synthetic_data, mlflow_uri, "model=ease", "data.dir=/elsewhere"),
                     "data", "split") == key  # where the data lies is not what it is


def test_the_code_is_part_of_the_key(synthetic_data, mlflow_uri, monkeypatch):
    cfg = config(synthetic_data, mlflow_uri, "model=bpr")
    key = cache_key(cfg, "data", "split")
    assert cache_key(config(synthetic_data, mlflow_uri, "model=bpr",
                            "model.trainer.progress=false"), "data", "split") == key
    monkeypatch.setattr(cache_module, "code_version", lambda: "another commit")
    assert cache_key(cfg, "data", "split") != key


def test_an_iterative_models_curve_is_logged_again(synthetic_data, mlflow_uri):
    overrides = ["model=bpr", "model.factors=8", "model.trainer.epochs=3",
                 "model.trainer.min_epochs=0", "model.trainer.progress=false"]  # fmt: skip
    run(config(synthetic_data, mlflow_uri, *overrides))
    run(config(synthetic_data, mlflow_uri, *overrides))
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("cache")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])
    curves = [[(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "epoch/loss")]
              for r in runs]  # fmt: skip
    assert len(curves[0]) == 3 and curves[1] == curves[0]
    assert runs[1].data.tags["cache.hit"] == "true"


def test_disabled_cache_writes_nothing(synthetic_data, mlflow_uri, tmp_path):
    folder = tmp_path / "cache"
    run(config(synthetic_data, mlflow_uri, "model=popular", "cache.enabled=false",
               f"cache.dir={folder}"))  # fmt: skip
    assert not folder.exists()
    assert tags(mlflow_uri)[0]["cache.hit"] == "false"


def test_an_unreadable_entry_is_fitted_again(tmp_path, caplog):
    store = ModelCache(tmp_path, max_gb=1)
    store.put("a" * 64, {"model": 1})
    store.path("a" * 64).write_bytes(b"not a pickle")
    assert store.get("a" * 64) is None
    assert "unreadable" in caplog.text and not store.path("a" * 64).exists()


def test_the_folder_is_bounded_least_recently_used_first(tmp_path):
    store = ModelCache(tmp_path, max_gb=2.5e3 / 2**30)  # room for two 1 kB entries
    (tmp_path / "notes.txt").write_text("not ours")
    keys = [c * 64 for c in "abc"]
    for age, key in enumerate(keys[:2]):
        store.put(key, b"x" * 1000)
        os.utime(store.path(key), (1000 + age, 1000 + age))
    assert store.get(keys[0]) is not None  # used: now the most recent
    store.put(keys[2], b"x" * 1000)
    assert [store.path(k).exists() for k in keys] == [True, False, True]
    assert (tmp_path / "notes.txt").read_text() == "not ours"
    assert not store.put("d" * 64, b"x" * 10_000)  # larger than the bound: not cached


def test_parallel_writers_and_readers_see_whole_entries(tmp_path):
    store = ModelCache(tmp_path, max_gb=1)
    value = {"weights": list(range(50_000))}
    errors = []

    def work():
        try:
            for _ in range(20):
                store.put("e" * 64, value)
                found = store.get("e" * 64)
                assert found is None or found == value
        except Exception as error:  # noqa: BLE001 - collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [p.name for p in tmp_path.iterdir()] == ["e" * 64 + ".pkl"]


@pytest.mark.parametrize("value", ["yes", 0, -1])
def test_bad_cache_settings_are_one_line(synthetic_data, mlflow_uri, value):
    from recsys.config import check_config
    from recsys.errors import ConfigError

    key = "cache.enabled" if value == "yes" else "cache.max_gb"
    with pytest.raises(ConfigError, match=key):
        check_config(config(synthetic_data, mlflow_uri, f"{key}={value}"))
