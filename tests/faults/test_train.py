"""Faults of ``python -m recsys.train`` and ``recsys.tune``: bad keys and values, data that
filters to nothing, MLflow stores that are dead, unusable, fail mid-run or are copied, runs
killed by signals, parallel runs on a fresh SQLite store."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from mlflow.tracking import MlflowClient

from recsys import train
from recsys.config import compose_config
from recsys.errors import TrackingError
from recsys.tracking import RunTracker, fail_orphans, open_client
from tests.conftest import SYNTHETIC, fresh_store
from tests.faults.harness import failing_cli, failing_subprocess, snapshot


def train_cli(argv: list[str]) -> None:
    """``python -m recsys.train ARGV``, in this process."""
    with mock.patch.object(sys, "argv", ["recsys.train", *argv]):
        train.cli()


@pytest.fixture
def project(tmp_path, synthetic_data, mlflow_uri, monkeypatch):
    """A working directory with the synthetic release and a fresh store; the base overrides."""
    monkeypatch.chdir(tmp_path)
    return [f"data.dir={synthetic_data}", f"data.name={SYNTHETIC}", f"tracking.uri={mlflow_uri}",
            "model=popular"]  # fmt: skip


def runs_of(uri: str) -> list:
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids)


@pytest.mark.parametrize(("override", "expected"), [
    ("model=als model.factor=64", "unknown key 'model.factor' in `model.factor=64`; did you "
                                  "mean model.factors?"),
    ("model.factors=64", "unknown key 'model.factors' in `model.factors=64`; model has no "
                         "settings to change"),
    ("model=ease model.factors=64", "model has dropout, regularization, user_weight, "
                                     "zero_diagonal"),
    ("sed=3", "did you mean seed?"),
    ("model=popular,ease", "`model=popular,ease` lists several values: a sweep runs with -m"),
    ("-m model=popular data.min_rating=interval(3,5)", "an interval needs a sampler"),
    ("-m model=popular seed=1,-1", "seed=-1: expected an integer from 0 to 2**32 - 1 (a value "
                                   "of the sweep `seed=1,-1`)"),  # before job #0 runs
    ("-m model=popular hydra/launcher=basic hydra.launcher.n_jobs=0",
     "`hydra.launcher.n_jobs=0`: expected a number of processes"),
    ("data=ml100", "choose one of ml-100k, ml-10m, ml-1m, ml-20m, ml-25m, ml-32m, synthetic; "
                   "did you mean ml-100k?"),  # the alias ml100k runs, but is not offered
    ("tracking.uri=mlflow.db", "tracking.uri=mlflow.db: expected null or a URI, e.g. "
                               "sqlite:///mlflow.db"),
    ("model=bpr trainer@model.trainer=fast", "unknown trainer 'fast' in "
                                             "`trainer@model.trainer=fast`: choose one of default"),
    ("model=ensemble model.weights={eas:0.5}", "unknown key 'model.weights.eas' in "
                                               "`model.weights={eas:0.5}`; did you mean "
                                               "model.weights.ease?"),
    ("model=alss", "unknown model 'alss' in `model=alss`: choose one of als, bpr"),
    ("seed=-1", "seed=-1: expected an integer from 0 to 2**32 - 1"),
    ("seed=abc", "seed=abc: expected an integer"),
    ("ks=[0,10]", "ks=[0, 10]: expected a list of positive integers"),
    ("ks=[10,100000]", "a cut-off of 100000 exceeds the 200 items of the catalogue"),
    ("ks=10", "ks=10: expected a list of positive integers, e.g. [5,10,20]"),
    ("objective=val/ndcg@15", "objective=val/ndcg@15: its K is not one of ks=[5, 10, 20]"),
    ("data.min_rating=abc", "data.min_rating=abc: expected null"),
    ("eval_batch_size=0", "eval_batch_size=0: expected a positive integer"),
    ("objective=test/ndcg@10", "objective=test/ndcg@10: expected val/METRIC@K"),
    ("protocol.refit=yes", "protocol.refit=yes: expected true or false"),
    ("data.min_rating=9", "data.min_rating=9 leaves no interactions in ml-synthetic (its ratings "
                          "run from 1 to 5)"),
    ("split.test_ratio=1.5", "split.test_ratio must be in (0, 1), got 1.5"),
    ("split=temporal", "split=temporal is not protocol msr's split (random_ratio): a protocol "
                       "names its split and gives its values; run protocol=temporal, which uses "
                       "it"),
    ("split=leave_one_out", "no protocol uses it: add one, conf/protocol/NAME.yaml as loo.yaml is"),
])  # fmt: skip
def test_a_bad_value_or_key_is_one_line_and_no_run(capsys, project, mlflow_uri, tmp_path,
                                                   override, expected):  # fmt: skip
    line = failing_cli(capsys, train_cli, [*project, *override.split()], protect=(tmp_path,))
    assert expected in line
    assert runs_of(mlflow_uri) == []  # refused before a run was created


def test_several_bad_values_are_one_line_each(capsys, project):
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train_cli([*project, "seed=-1", "eval_batch_size=x"])
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("=")[0] for line in lines] == ["error: seed", "error: eval_batch_size"]


def test_a_dead_tracking_server_is_reported_within_seconds(capsys, project, tmp_path,
                                                           monkeypatch):  # fmt: skip
    monkeypatch.setattr("recsys.tracking.CONNECT_TIMEOUT", 1.0)  # 5 s in use; 1 s in the suite
    with socket.socket() as listener:  # a port that is bound but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for uri in (f"http://127.0.0.1:{port}", "http://127.0.0.1:9"):  # silent; refused
            start = time.perf_counter()
            line = failing_cli(capsys, train_cli, [*project, f"tracking.uri={uri}"],
                               protect=(tmp_path,))  # fmt: skip
            assert time.perf_counter() - start < 15
            assert f"MLflow server {uri} is not reachable" in line


@pytest.mark.parametrize("kind", ["missing folder", "not a database", "a folder"])
def test_an_unusable_sqlite_store_is_one_line_before_the_data(capsys, project, tmp_path, kind):
    store = tmp_path / "store" / "mlflow.db"
    if kind != "missing folder":
        store.parent.mkdir()
    if kind == "not a database":
        store.write_text("my notes\n")
    if kind == "a folder":
        store.mkdir()
    with mock.patch("recsys.train.load_split", side_effect=AssertionError("data loaded")):
        line = failing_cli(capsys, train_cli, [*project, f"tracking.uri=sqlite:///{store}"],
                           protect=(tmp_path,))  # fmt: skip
    assert f"sqlite:///{store}" in line


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_store_is_one_line_before_the_data(capsys, project, mlflow_uri, tmp_path,
                                                       what):  # fmt: skip
    # read-only even for root: the immutable attribute
    store = tmp_path / "store" / "mlflow.db"  # a folder of its own (Hydra writes ./outputs)
    store.parent.mkdir()
    shutil.copyfile(mlflow_uri.removeprefix("sqlite:///"), store)
    target = store if what == "file" else store.parent
    if subprocess.run(["chattr", "+i", str(target)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i (immutable, read-only even for root) is not available here")
    try:
        with mock.patch("recsys.train.load_split", side_effect=AssertionError("data loaded")):
            line = failing_cli(capsys, train_cli, [*project, f"tracking.uri=sqlite:///{store}"],
                               protect=(tmp_path,))  # fmt: skip
    finally:
        subprocess.run(["chattr", "-i", str(target)], check=True)
    assert f"MLflow store sqlite:///{store} is not writable" in line


def test_a_store_that_fails_mid_run_leaves_the_run_failed_with_its_params(capsys, project,
                                                                          mlflow_uri):  # fmt: skip
    from mlflow.exceptions import MlflowException

    broken = MlflowException("disk I/O error\n" + "details\n" * 500)
    with mock.patch.object(MlflowClient, "log_artifacts", side_effect=broken):
        line = failing_cli(capsys, train_cli, project)
    assert "log_artifacts failed: disk I/O error: check tracking.uri" in line
    (run,) = runs_of(mlflow_uri)
    assert run.info.status == "FAILED"
    assert run.data.params["seed"] == "42" and run.data.params["model_name"] == "popular"
    assert "disk I/O error" in run.data.tags["recsys.failure"]


def test_a_run_that_fails_in_training_carries_its_config(capsys, project, mlflow_uri):
    with mock.patch("recsys.train.fit_selected", side_effect=RuntimeError("boom")), \
            pytest.raises(RuntimeError):
        train.run(compose_config(project))
    (run,) = runs_of(mlflow_uri)
    assert run.info.status == "FAILED"
    assert run.data.params["model_name"] == "popular"
    assert run.data.tags["data.sha256"] and run.data.tags["split.fingerprint"]
    assert run.data.tags["recsys.failure"] == "RuntimeError: boom"


def test_a_killed_process_leaves_no_run_running_forever(mlflow_uri):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    client = open_client(mlflow_uri, write=True)
    tracker = RunTracker(mlflow_uri, "exp", "orphan")
    client.set_tag(tracker.run_id, "recsys.pid", str(dead.pid))  # as if SIGKILLed
    experiment = client.get_experiment_by_name("exp").experiment_id
    assert fail_orphans(client, experiment) == [tracker.run_id]
    assert client.get_run(tracker.run_id).info.status == "FAILED"
    alive = RunTracker(mlflow_uri, "exp", "alive")  # our own process: still running
    RunTracker(mlflow_uri, "exp", "next")  # starting a run closes the orphans, not the living
    assert "killed" in client.get_run(tracker.run_id).data.tags["recsys.failure"]
    assert client.get_run(alive.run_id).info.status == "RUNNING"


def test_a_copied_store_keeps_its_artifacts_inside_the_copy(project, mlflow_uri, tmp_path):
    als = [o for o in project if not o.startswith("model=")] + ["model=als", "model.factors=4"]
    train.run(compose_config(als))  # an embedding model: a logged model too
    original = Path(mlflow_uri.removeprefix("sqlite:///")).parent
    copy = tmp_path.parent / f"{tmp_path.name}-copy"
    shutil.copytree(original, copy)
    before = snapshot(original)
    copied_uri = f"sqlite:///{copy}/mlflow.db"
    tracker = RunTracker(copied_uri, "ml-synthetic", "new")  # the first run of the copy
    assert tracker.client.get_run(tracker.run_id).info.artifact_uri.startswith(f"{copy}/")
    old = next(r for r in runs_of(copied_uri) if r.info.run_id != tracker.run_id)
    assert old.info.artifact_uri.startswith(f"{copy}/")
    assert (Path(old.info.artifact_uri) / "config.yaml").exists()
    (model,) = tracker.client.search_logged_models([old.info.experiment_id])
    assert model.artifact_location.startswith(f"{copy}/")
    assert (Path(model.artifact_location) / "MLmodel").exists()
    assert snapshot(original) == before


def test_a_new_store_keeps_artifacts_beside_it_whatever_the_working_directory(
        project, tmp_path, monkeypatch):  # fmt: skip
    store = tmp_path / "elsewhere"
    store.mkdir()
    monkeypatch.chdir(tmp_path / "data")
    train.run(compose_config([*project, f"tracking.uri=sqlite:///{store}/mlflow.db"]))
    (run,) = runs_of(f"sqlite:///{store}/mlflow.db")
    assert run.info.artifact_uri.startswith(f"{store}/mlruns/")
    assert not (tmp_path / "data" / "mlruns").exists()


def start_runs_at_once(tmp_path, n: int) -> str:
    """``n`` processes each log a run into a new SQLite store at the same moment; its URI."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    script = ("import sys; from recsys.tracking import RunTracker; "
              "t = RunTracker(sys.argv[1], 'parallel', sys.argv[2]); t.log_metrics({'x': 1.0}); "
              "t.end()")  # fmt: skip
    processes = [subprocess.Popen([sys.executable, "-c", script, uri, f"run{i}"],
                                  stderr=subprocess.PIPE, text=True) for i in range(n)]  # fmt: skip
    errors = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * n, errors
    return uri


def test_runs_started_at_once_on_a_fresh_sqlite_store_all_finish(tmp_path):
    # without the lock, MLflow's migrations of a new store race: 7 of 8 such processes died
    # (duplicate column name: step; table latest_metrics already exists)
    runs = runs_of(start_runs_at_once(tmp_path, 3))
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.slow
def test_eight_training_runs_at_once_on_a_fresh_sqlite_store_are_complete(ml100k_dir, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    command = [sys.executable, "-m", "recsys.train", f"data.dir={ml100k_dir}",
               f"tracking.uri={uri}", "model=popular"]  # fmt: skip
    processes = [subprocess.Popen([*command, f"seed={seed}"], cwd=tmp_path, text=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
                 for seed in range(1, 9)]  # fmt: skip
    errors = [p.communicate(timeout=600)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 8, errors
    runs = runs_of(uri)
    assert sorted(r.data.params["seed"] for r in runs) == [str(s) for s in range(1, 9)]
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:  # complete: metrics and the artifacts the report reads
        assert "test/ndcg_at_10" in run.data.metrics
        assert (Path(run.info.artifact_uri) / "metrics" / "test_per_user.csv").exists()


@pytest.mark.integration
def test_sigterm_mid_fit_leaves_the_run_failed_with_its_params(ml100k_dir, tmp_path,
                                                               mlflow_template):  # fmt: skip
    uri = fresh_store(tmp_path, mlflow_template)
    command = [sys.executable, "-m", "recsys.train", "model=bpr", f"data.dir={ml100k_dir}",
               f"tracking.uri={uri}", "model.trainer.epochs=1000", "model.trainer.patience=0",
               "model.trainer.progress=false"]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    client = MlflowClient(uri)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the first epoch is logged: mid-fit
        runs = runs_of(uri) if client.get_experiment_by_name("ml-100k") else []
        if runs and client.get_metric_history(runs[0].info.run_id, "epoch/loss"):
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in stderr
    assert [x for x in stderr.splitlines() if x.startswith("error:")] == [
        "error: Terminated: stopped by SIGTERM: the MLflow run, if any, is marked FAILED"]
    (run,) = runs_of(uri)
    assert run.info.status == "FAILED"
    assert run.data.params["model.factors"] and run.data.tags["recsys.failure"].startswith(
        "Terminated")


def test_tune_checks_its_command_line_too(tmp_path):
    line, _ = failing_subprocess("recsys.tune", "model=bpr", "tune.trails=5", cwd=tmp_path,
                                 protect=(tmp_path,))  # fmt: skip
    assert line == ("error: unknown key 'tune.trails' in `tune.trails=5`; did you mean "
                    "tune.trials?")


def test_tracking_errors_name_the_store(tmp_path):
    with pytest.raises(TrackingError, match="does not exist"):
        open_client(f"sqlite:///{tmp_path}/no/such/mlflow.db", write=True)
