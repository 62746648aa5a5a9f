"""Sweeps through Hydra's parallel launchers into a shared tracking server, as a lab runs them:
a real ``mlflow server`` on 127.0.0.1 with its artifacts served over HTTP
(``--artifacts-destination``), backed by a throwaway PostgreSQL cluster (skipped where the
PostgreSQL server is not installed) and by SQLite; ``python -m recsys.train -m`` with
``hydra/launcher=joblib`` (2 loky worker processes) and ``submitit_local`` (a process per job,
each in its own folder) must land every run, complete, under the sweep's one parent run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from recsys.config import CONF_DIR, check_overrides
from recsys.errors import ConfigError
from recsys.tracking import PARENT_FILE
from tests.servers import mlflow_server, postgres_database, postgres_skip_reason

pytest.importorskip("hydra_plugins.hydra_joblib_launcher",
                    reason="hydra-joblib-launcher is not installed (pip install -e '.[cluster]')")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                    reason="hydra-submitit-launcher is not installed (pip install -e '.[cluster]')")


MODELS, SEEDS = ("popular", "ease"), (1, 2, 3)
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local"],
}


def test_the_lab_slurm_config_is_submitits_with_the_labs_settings():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.cpus_per_task) == ("cpu", 60, 4)
    check_overrides(["-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "seed=1,2"])


def test_an_unknown_launcher_is_one_line_naming_the_known_ones():
    with pytest.raises(ConfigError) as raised:
        check_overrides(["-m", "hydra/launcher=jobib"])
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("unknown hydra/launcher 'jobib' in `hydra/launcher=jobib`")
    assert "joblib, slurm, submitit_local, submitit_slurm; did you mean joblib?" in message


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def lab_server(request, tmp_path_factory):
    """``(URL, artifacts folder)`` of an ``mlflow server`` on a PostgreSQL or SQLite store."""
    root = tmp_path_factory.mktemp(f"lab-{request.param}")
    artifacts = root / "artifacts"
    if request.param == "postgresql":
        reason = postgres_skip_reason()
        if reason is not None:
            pytest.skip(reason)
        with postgres_database() as database, mlflow_server(database, root, artifacts) as url:
            yield url, artifacts
    else:
        with mlflow_server(f"sqlite:///{root}/mlflow.db", root, artifacts) as url:
            yield url, artifacts


def sweep(overrides: list[str], url: str, experiment: str, folder: Path, data_dir: Path):
    """``python -m recsys.train -m OVERRIDES`` into ``experiment`` of the server at ``url``."""
    command = [sys.executable, "-m", "recsys.train", "-m", *overrides, f"data.dir={data_dir}",
               f"tracking.uri={url}", f"tracking.experiment={experiment}",
               f"hydra.sweep.dir={folder / 'sweep'}"]  # fmt: skip
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=480,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def sweep_runs(client: MlflowClient, experiment: str):
    """``(parent, children)`` of the one sweep in ``experiment``."""
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get("recsys.sweep") == "true"]
    children = [run for run in runs if run is not parent]
    return parent, children


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_a_parallel_sweep_logs_every_run_complete_under_one_parent(
    lab_server, launcher, ml100k_dir, tmp_path
):
    url, artifacts = lab_server
    experiment = f"lab-{launcher}"
    overrides = [f"model={','.join(MODELS)}", f"seed={','.join(map(str, SEEDS))}"]
    result = sweep([*overrides, *LAUNCHERS[launcher]], url, experiment, tmp_path, ml100k_dir)
    assert result.returncode == 0, result.stderr[-3000:]

    client = MlflowClient(url)
    parent, children = sweep_runs(client, experiment)
    assert parent.info.status == "FINISHED"
    written = json.loads((tmp_path / "sweep" / PARENT_FILE).read_text())["run_id"]
    assert written == parent.info.run_id  # the file every job read its parent from
    assert sorted((run.data.params["model_name"], run.data.params["seed"]) for run in children) \
        == sorted((model, str(seed)) for model in MODELS for seed in SEEDS)  # fmt: skip
    for run in children:
        name = run.info.run_name
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id, name
        assert run.info.status == "FINISHED", (name, run.data.tags.get("recsys.failure"))
        assert 0 < run.data.metrics["test/ndcg_at_10"] <= 1, name
        assert {"val/ndcg_at_10", "time/fit_seconds"} <= run.data.metrics.keys(), name
        # artifacts went to the server over HTTP and lie in its artifact root
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), name
        listed = {entry.path for entry in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "environment.txt", "metrics"} <= listed, (name, listed)
        stored = artifacts / run.info.experiment_id / run.info.run_id / "artifacts"
        assert f"seed: {run.data.params['seed']}" in (stored / "config.yaml").read_text()
    assert "Sweep of 6 runs (6 finished)" in parent.data.tags["mlflow.note.content"]


@pytest.mark.slow
@pytest.mark.integration
def test_a_job_that_fails_ends_the_sweep_run_failed(lab_server, ml100k_dir, tmp_path):
    """A job's error makes Hydra stop the sweep without its multirun-end callback: the parent
    run is closed FAILED when the process exits, not left RUNNING."""
    url, _ = lab_server
    overrides = ["model=popular", "data.min_rating=1,9", *LAUNCHERS["joblib"]]
    result = sweep(overrides, url, "lab-failing", tmp_path, ml100k_dir)
    assert result.returncode == 1
    assert "error: data.min_rating=9 leaves no interactions" in result.stderr

    parent, _ = sweep_runs(MlflowClient(url), "lab-failing")
    assert parent.info.status == "FAILED"
    assert "the sweep stopped at a job's error" in parent.data.tags["recsys.failure"]
