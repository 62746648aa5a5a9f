"""How runs look in MLflow: sortable metric names, the dataset as an input, a description,
machine settings as tags, a servable pyfunc model, one parent run per sweep with the report's
figures attached."""

import getpass
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from recsys.config import compose_config, load_split
from recsys.errors import TrackingError
from recsys.tracking import RUNS_VIEW_KEY, RunTracker, canonical_metrics, mlflow_key
from recsys.train import run
from tests.conftest import SYNTHETIC


def test_metric_names_sort_by_cut_off_as_text():
    names = [mlflow_key(f"test/ndcg@{k}") for k in (20, 5, 10)]
    assert names == ["test/ndcg_at_20", "test/ndcg_at_05", "test/ndcg_at_10"]
    assert sorted(names) == ["test/ndcg_at_05", "test/ndcg_at_10", "test/ndcg_at_20"]
    old = {"test/ndcg_at_5": 0.1, "test/ndcg_at_10": 0.2, "time/fit_seconds": 3.0}
    assert canonical_metrics(old) == {"test/ndcg_at_05": 0.1, "test/ndcg_at_10": 0.2,
                                      "time/fit_seconds": 3.0}  # fmt: skip


# what PostgreSQL answered a sweep's second run, which logged the same dataset at the same moment
_RACE = ('BAD_REQUEST: (psycopg.errors.UniqueViolation) duplicate key value violates unique '
         'constraint "dataset_pk"')  # fmt: skip


def _log_release(tracker: RunTracker) -> None:
    tracker.log_dataset("ml-x", "0123abcd", "data/ml-x", {"rows": 3}, context="train")


def test_two_runs_logging_one_dataset_at_once_both_get_it(mlflow_uri, monkeypatch):
    """The other run inserts the dataset between this run's look-up and insert: the insert
    breaks the unique key, and a second try finds the other run's row."""
    from mlflow.exceptions import MlflowException

    first, second = (RunTracker(mlflow_uri, "race", f"run {i}") for i in (1, 2))
    log_inputs, calls = second.client.log_inputs, []

    def racing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            _log_release(first)
            raise MlflowException(_RACE)
        return log_inputs(*args, **kwargs)

    monkeypatch.setattr(second.client, "log_inputs", racing)
    _log_release(second)
    assert len(calls) == 2
    client = MlflowClient(mlflow_uri)
    for tracker in (first, second):
        (logged,) = client.get_run(tracker.run_id).inputs.dataset_inputs
        assert (logged.dataset.name, logged.dataset.digest) == ("ml-x", "0123abcd")


def test_a_dataset_that_fails_otherwise_is_one_error_without_retries(mlflow_uri, monkeypatch):
    from mlflow.exceptions import MlflowException

    tracker, calls = RunTracker(mlflow_uri, "race", "run"), []

    def failing(*args, **kwargs):
        calls.append(args)
        raise MlflowException("INTERNAL_ERROR: disk full\nsecond line")

    monkeypatch.setattr(tracker.client, "log_inputs", failing)
    with pytest.raises(TrackingError, match=r"log_dataset failed: INTERNAL_ERROR: disk full: "):
        _log_release(tracker)
    assert len(calls) == 1


@pytest.fixture
def als_run(synthetic_data, mlflow_uri, tmp_path, monkeypatch):
    """An ALS run (an embedding model) on the synthetic release; ``(run, cfg)``."""
    monkeypatch.chdir(tmp_path)
    cfg = compose_config([f"data.dir={synthetic_data}", f"data.name={SYNTHETIC}", "model=als",
                          f"tracking.uri={mlflow_uri}", "model.factors=8"])  # fmt: skip
    run(cfg)
    client = MlflowClient(mlflow_uri)
    (logged,) = client.search_runs([client.get_experiment_by_name(SYNTHETIC).experiment_id])
    return logged, cfg


def test_a_run_shows_its_data_description_and_no_machine_params(als_run):
    logged, cfg = als_run
    inputs = {i.dataset.name: i for i in logged.inputs.dataset_inputs}
    data, split = inputs[SYNTHETIC], inputs[f"{SYNTHETIC}/msr-split-seed42"]
    assert data.dataset.digest == logged.data.tags["data.sha256"][:16]
    assert [t.value for t in data.tags] == ["train"]
    assert split.dataset.digest == logged.data.tags["split.fingerprint"][:16]
    assert json.loads(split.dataset.profile)["fingerprint"] == logged.data.tags["split.fingerprint"]
    note = logged.data.tags["mlflow.note.content"]
    assert note.startswith("**als** on ml-synthetic, protocol `msr`, seed 42: test NDCG@10 **")
    assert f"{logged.data.metrics['test/ndcg_at_10']:.4f}" in note
    assert "tracking.uri" not in logged.data.params and "data.dir" not in logged.data.params
    assert logged.data.tags["machine.data.dir"] == cfg.data.dir
    assert logged.data.params["model.factors"] == "8"  # the experiment's settings stay params


def test_the_experiment_has_a_runs_view_of_columns_every_run_logs(als_run):
    logged, cfg = als_run
    experiment = MlflowClient(cfg.tracking.uri).get_experiment(logged.info.experiment_id)
    view = json.loads(experiment.tags[f"mlflow.sharedViewState.{RUNS_VIEW_KEY}"])
    columns = json.loads(view["state"])["selectedColumns"]
    kinds = {"metrics": logged.data.metrics, "params": logged.data.params}
    named = [column.split(".", 1) for column in columns if not column.startswith("attributes.")]
    assert named and all(name.strip("`") in kinds[kind] for kind, name in named)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_logged_model_serves_top_k_unrated_items_by_inner_product(als_run):
    logged, cfg = als_run
    (output,) = logged.outputs.model_outputs  # the run page's "Logged models"
    entry = MlflowClient(cfg.tracking.uri).get_logged_model(output.model_id)
    assert (entry.name, entry.source_run_id) == ("model", logged.info.run_id)
    assert str(entry.status) == "READY"
    model = mlflow.pyfunc.load_model(f"runs:/{logged.info.run_id}/model")
    assert model.metadata.model_id == entry.model_id
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["user_id"]
    split = load_split(cfg).split
    users = split.train.user_ids[[0, 7, 3]]
    out = model.predict(pd.DataFrame({"user_id": users}), params={"k": 5})
    assert list(out.columns) == ["user_id", "rank", "item_id", "score"]
    folder = mlflow.artifacts.download_artifacts(f"runs:/{logged.info.run_id}/embeddings")
    vectors = {n: np.load(f"{folder}/{n}.npy") for n in ("user_embeddings", "item_embeddings")}
    rated = (split.train.to_csr() + split.validation.to_csr() + split.test.to_csr()).toarray()
    for row, user in zip([0, 7, 3], users, strict=True):  # a naive loop over the catalogue
        scores = vectors["user_embeddings"][row] @ vectors["item_embeddings"].T
        candidates = [i for i in np.argsort(-scores, kind="stable") if not rated[row, i]][:5]
        mine = out[out["user_id"] == user].sort_values("rank")
        assert list(mine["rank"]) == [1, 2, 3, 4, 5]
        assert list(mine["item_id"]) == list(split.train.item_ids[candidates])
        np.testing.assert_allclose(mine["score"], scores[candidates], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown user id"):
        model.predict(pd.DataFrame({"user_id": [10**9]}))


@pytest.mark.integration
def test_a_sweep_is_one_parent_run_with_the_report_attached(benchmark_sweep):
    uri, _ = benchmark_sweep
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sweep").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("recsys.sweep") == "true"]
    children = [r for r in runs if r is not parent]
    assert len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["mlflow.note.content"].startswith("Sweep of 4 runs (4 finished)")
    assert parent.info.run_name == "sweep: model=popular,als seed=1,2"  # no machine paths
    for logged in runs:  # the UI's User and Source columns
        assert logged.data.tags["mlflow.source.name"] == "recsys.train"
        assert logged.data.tags["mlflow.user"] == getpass.getuser()
    attached = {f.path for f in client.list_artifacts(parent.info.run_id, "report/figures")}
    assert "report/figures/metric_bars.png" in attached
    assert {f.path for f in client.list_artifacts(parent.info.run_id, "report")} >= {
        "report/results.md", "report/results.tex"}


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_logged_model(als_run):
    logged, cfg = als_run
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    command = [mlflow_cli, "models", "serve", "-m", f"runs:/{logged.info.run_id}/model",
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    path = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"  # uvicorn
    server = subprocess.Popen(command, env={**os.environ, "MLFLOW_TRACKING_URI": cfg.tracking.uri,
                                            "PATH": path},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "no server"
                time.sleep(0.5)
        user = int(load_split(cfg).split.train.user_ids[0])
        body = json.dumps({"dataframe_records": [{"user_id": user}], "params": {"k": 3}})
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body.encode(),
                                         {"Content-Type": "application/json"})  # fmt: skip
        answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows = answer["predictions"]
    assert [row["rank"] for row in rows] == [1, 2, 3]
    assert {row["user_id"] for row in rows} == {user}
