"""MLflow tracking through an explicit client: no global MLflow state, safe in parallel sweeps.

Metric names inside recsys read ``ndcg@10``; MLflow does not allow ``@`` in names, so they are
logged as ``ndcg_at_10`` (``mlflow_key``). MLflow is imported when a run is tracked, not when
this module is: an untracked run, or a command that fails on a bad value, does without its
second of imports.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGES = ("recsys", "numpy", "scipy", "pandas", "torch", "torch-geometric", "implicit",
            "faiss-cpu", "hydra-core", "omegaconf", "mlflow")  # fmt: skip
_BATCH = 100  # MLflow's log_batch takes at most 100 params / 1000 metrics per call
_MAX_PARAM_LENGTH = 6000


def mlflow_key(name: str) -> str:
    """``val/ndcg@10`` -> ``val/ndcg_at_10`` (MLflow names may not contain ``@``)."""
    return name.replace("@", "_at_")


class RunTracker:
    """One MLflow run, logged through an explicit ``MlflowClient``.

    Parameters
    ----------
    tracking_uri
        ``None`` uses ``MLFLOW_TRACKING_URI`` if set, else MLflow's default (a SQLite file
        ``mlflow.db`` in the working directory). A server URL (``http://host:5000``) works.
    experiment
        Experiment name; created if missing.
    run_name
        Display name of the run.
    parent_run_id
        Make the run a child of this one (a study's trials under the study's run).
    run_id
        Continue this existing run instead of creating one.
    """

    def __init__(self, tracking_uri: str | None, experiment: str, run_name: str,
                 parent_run_id: str | None = None, run_id: str | None = None):  # fmt: skip
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        if run_id is not None:  # an existing run, continued (a resumed study's parent)
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            tags = {} if parent_run_id is None else {"mlflow.parentRunId": parent_run_id}
            experiment_id = _experiment_id(self.client, experiment)
            self.run_id = self.client.create_run(experiment_id, run_name=run_name,
                                                 tags=tags).info.run_id  # fmt: skip
        self.tracking_uri = self.client.tracking_uri

    def log_params(self, params: Mapping[str, object]) -> None:
        from mlflow.entities import Param

        entries = [Param(key, str(value)[:_MAX_PARAM_LENGTH]) for key, value in params.items()]
        for start in range(0, len(entries), _BATCH):
            self.client.log_batch(self.run_id, params=entries[start : start + _BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        entries = [Metric(mlflow_key(k), float(v), stamp, step) for k, v in metrics.items()]
        for start in range(0, len(entries), 10 * _BATCH):
            self.client.log_batch(self.run_id, metrics=entries[start : start + 10 * _BATCH])

    def set_tags(self, tags: Mapping[str, object]) -> None:
        from mlflow.entities import RunTag

        entries = [RunTag(key, str(value)) for key, value in tags.items()]
        self.client.log_batch(self.run_id, tags=entries)

    def log_artifacts(self, folder: str | os.PathLike) -> None:
        self.client.log_artifacts(self.run_id, str(folder))

    def end(self, failed: bool = False) -> None:
        from mlflow.entities import RunStatus

        status = RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
        self.client.set_terminated(self.run_id, status)


def _experiment_id(client, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # created meanwhile by a parallel run of the same sweep
        return client.get_experiment_by_name(name).experiment_id


def flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    """``{"model": {"factors": 64}}`` -> ``{"model.factors": 64}``."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def git_state(folder: str | os.PathLike | None = None) -> dict[str, str]:
    """Commit and dirty flag of the checkout holding ``folder`` (the recsys sources)."""
    folder = Path(folder or Path(__file__).parent)

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()  # fmt: skip

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    return {"git.commit": commit, "git.dirty": str(dirty).lower(),
            "mlflow.source.git.commit": commit}  # fmt: skip


def package_versions() -> dict[str, str]:
    versions = {"version.python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[f"version.{package}"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[f"version.{package}"] = "not installed"
    return versions


def environment_listing() -> str:
    """Every installed distribution as ``name==version`` lines (a ``pip freeze``)."""
    names = {(d.metadata["Name"] or "?", d.version) for d in importlib.metadata.distributions()}
    ordered = sorted(names, key=lambda entry: entry[0].lower())
    return "".join(f"{name}=={version}\n" for name, version in ordered)


def hardware() -> dict[str, str]:
    info = {
        "hardware.machine": platform.machine(),
        "hardware.system": platform.platform(),
        "hardware.cpu": _cpu_model(),
        "hardware.cpu_count": str(os.cpu_count()),
    }
    torch = sys.modules.get("torch")  # loaded by the torch models, the ones that use a GPU
    if torch is not None and torch.cuda.is_available():
        info["hardware.gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
