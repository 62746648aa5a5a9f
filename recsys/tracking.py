"""MLflow tracking through an explicit client: no global MLflow state, safe in parallel sweeps.

``open_client`` is the one way in: it checks the store before any work (a tracking server must
answer within ``CONNECT_TIMEOUT`` seconds; a SQLite store must be writable), creates a fresh
SQLite store's schema once under a lock on its folder (MLflow's own migration races when
several runs start at once: ``duplicate column name``), and keeps a copied or moved SQLite
store self-contained: artifacts live in ``mlruns/`` beside the database, and a copy's artifact
locations are rewritten to point into the copy. Every MLflow failure becomes one
``TrackingError`` line.

Metric names inside recsys read ``ndcg@10``; MLflow does not allow ``@`` in names, so they are
logged as ``ndcg_at_10`` (``mlflow_key``). MLflow is imported when a run is tracked, not when
this module is: an untracked run, or a command that fails on a bad value, does without its
second of imports.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.experimental.callback import Callback

from recsys.errors import RecsysError, TrackingError, first_line, print_error
from recsys.files import atomic_write_text, process_exists

if TYPE_CHECKING:
    from mlflow.models import Model

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0  # seconds a tracking server has to answer the health check
# MLflow's own HTTP retries (seven, with backoff: minutes against a dead server) are cut to these
HTTP_RETRIES = "2"
HTTP_TIMEOUT = "30"

PACKAGES = ("recsys", "numpy", "scipy", "pandas", "torch", "torch-geometric", "implicit",
            "faiss-cpu", "hydra-core", "omegaconf", "mlflow")  # fmt: skip
_BATCH = 100  # MLflow's log_batch takes at most 100 params / 1000 metrics per call
_MAX_PARAM_LENGTH = 6000
_MAX_RUN_NAME = 250  # MLflow's limit on a run name
# config keys that describe the machine, not the experiment: logged as tags, not params
MACHINE_KEYS = ("tracking.uri", "data.dir", "cache.enabled", "cache.dir", "cache.max_gb",
                "memory_gb")


def mlflow_key(name: str) -> str:
    """``val/ndcg@10`` -> ``val/ndcg_at_10``, ``val/ndcg@5`` -> ``val/ndcg_at_05``.

    MLflow names may not contain ``@``, and its UI sorts metric columns as text: two-digit
    cut-offs keep ``_at_05`` before ``_at_10`` and ``_at_20``.
    """
    return re.sub(r"@(\d+)", lambda match: f"_at_{int(match.group(1)):02d}", name)


def canonical_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Metric names as ``mlflow_key`` writes them now (runs logged before cut-offs were padded
    read ``ndcg_at_5``): ``{"test/ndcg_at_5": x}`` -> ``{"test/ndcg_at_05": x}``."""
    return {re.sub(r"_at_(\d+)$", lambda m: f"_at_{int(m.group(1)):02d}", k): v
            for k, v in metrics.items()}  # fmt: skip


def resolve_uri(tracking_uri: str | None) -> str:
    """``None`` -> ``MLFLOW_TRACKING_URI`` if set, else MLflow's default (``sqlite:///mlflow.db``
    in the working directory)."""
    if tracking_uri:
        return tracking_uri
    from mlflow.tracking import get_tracking_uri

    return get_tracking_uri()


def open_client(tracking_uri: str | None, *, write: bool = False, option: str = "tracking.uri"):
    """An ``MlflowClient`` on a store checked to be usable, or one ``TrackingError`` line.

    A server (``http(s)://``) must answer ``/health`` within ``CONNECT_TIMEOUT`` seconds. A
    SQLite store's folder must exist; with ``write``, the store must be writable, and its schema
    is created under a lock on that folder; without, the store must exist already (a reader
    creates no empty ``mlflow.db`` where it was started, nor where a mistyped URI points).
    Nothing in an existing store changes. ``option`` is how the caller's user sets the URI
    (``tracking.uri``, or a reader's ``--tracking-uri``), named in the errors.
    """
    from mlflow.tracking import MlflowClient

    uri = resolve_uri(tracking_uri)
    if "://" not in uri and not uri.startswith("databricks"):  # a path: MLflow's file store
        raise TrackingError(f"{_given(option, uri)}: not a store URI: a SQLite store is "
                            f"sqlite:///{uri}, a server http://HOST:PORT")  # fmt: skip
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", HTTP_RETRIES)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_TIMEOUT)
        check_server(uri, option)
        return MlflowClient(tracking_uri=uri)
    database = sqlite_path(uri)
    if database is None:  # another backend (a PostgreSQL URL, a file store): MLflow checks it
        with mlflow_errors(uri, "cannot open", option):
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
        return client
    folder = database.parent
    if write and not folder.is_dir():
        raise TrackingError(f"{_given(option, uri)}: folder {folder} does not exist: create it, or "
                            f"point {option} at an existing folder")  # fmt: skip
    if not write and not database.exists():
        raise TrackingError(f"{_given(option, uri)}: no MLflow store at {database}: train a model "
                            f"first (python -m recsys.train), or point {option} (or "
                            f"MLFLOW_TRACKING_URI) at your store")  # fmt: skip
    with folder_lock(folder), mlflow_errors(uri, "cannot open", option):
        if write:
            check_writable(database, uri)
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # creates the schema of a new store, once
    return client


def check_server(uri: str, option: str = "tracking.uri") -> None:
    """Fail fast, with one line, unless the tracking server at ``uri`` answers ``/health``."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=CONNECT_TIMEOUT):
            return
    except urllib.error.HTTPError as error:  # it answered: a server, if not a healthy one
        if error.code < 500:
            return
        reason = f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = str(getattr(error, "reason", error)) or type(error).__name__
    raise TrackingError(
        f"MLflow server {uri} is not reachable ({reason}, {CONNECT_TIMEOUT:.0f} s timeout): start "
        f"it (mlflow server --host 127.0.0.1 --port PORT), or point {option} at another store"
        f"{_without_tracking(option)}"
    )


def _given(option: str, uri: str) -> str:
    """How the user gave ``uri``: ``tracking.uri=URI`` (an override), ``--tracking-uri URI``."""
    return f"{option} {uri}" if option.startswith("--") else f"{option}={uri}"


def _without_tracking(option: str) -> str:
    """The other way out for a run (``tracking.uri``): not to track at all."""
    return " (or set tracking.enabled=false)" if option == "tracking.uri" else ""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``None`` for other stores and ``:memory:``)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).absolute()


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder`` itself (no lock file left behind): runs started at
    once create a new store's schema one after the other."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def check_writable(database: Path, uri: str) -> None:
    """Write to an existing store inside a transaction that is rolled back (nothing changes),
    or create and remove a file beside a new one: a read-only store fails here, before any
    work."""
    try:
        if database.exists():
            connection = sqlite3.connect(database, timeout=30)
            try:  # SQLite opens a file it may not write read-only: only a write tells
                connection.execute("BEGIN IMMEDIATE")
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                connection.execute(f"PRAGMA user_version = {int(version)}")
                connection.rollback()
            finally:
                connection.close()
        else:
            with tempfile.TemporaryFile(dir=database.parent):
                pass
    except (sqlite3.Error, OSError) as error:
        raise TrackingError(f"MLflow store {uri} is not writable ({error}): fix the permissions "
                            f"of {database}, or set tracking.uri to a store you can "
                            f"write") from None  # fmt: skip


def relocate_artifacts(database: Path) -> int:
    """Point artifact locations recorded by a copy's original into the copy.

    MLflow records absolute artifact locations (``<folder>/mlruns/<id>``), so a SQLite store
    copied with its folder (``cp -a``) would keep writing into and reading from the original.
    An experiment at ``<other>/mlruns/<x>``, where ``<other>`` does not hold this very database,
    moves (with its runs and logged models) to ``<this folder>/mlruns/<x>`` when the copy holds
    that folder, when ``<other>`` holds another store (the original), or when ``<other>`` is
    gone (a moved store). Returns the number of experiments moved (0 for a store never copied).
    """
    root = database.parent
    connection = sqlite3.connect(database, timeout=30)
    try:
        rows = connection.execute("SELECT experiment_id, artifact_location FROM experiments")
        moves = [(experiment, old, location) for experiment, location in rows.fetchall()
                 if (old := _artifact_root(location)) is not None
                 and _was_copied(Path(old), database, location)]  # fmt: skip
        with connection:
            for experiment, old, location in moves:
                prefix = location[: location.index(old) + len(old)]
                new = prefix.replace(old, str(root))
                connection.execute("UPDATE experiments SET artifact_location = ? WHERE "
                                   "experiment_id = ?", (new + location[len(prefix):], experiment))
                for table, column in (("runs", "artifact_uri"),
                                      ("logged_models", "artifact_location")):  # fmt: skip
                    connection.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE "
                        f"experiment_id = ? AND substr({column}, 1, ?) = ?",
                        (new, len(prefix) + 1, experiment, len(prefix), prefix))  # fmt: skip
    finally:
        connection.close()
    for experiment, old, _ in moves:
        log.warning("MLflow store %s was copied or moved from %s: the artifacts of experiment %s "
                    "now live in %s/mlruns", database, old, experiment, root)  # fmt: skip
    return len(moves)


def _was_copied(old: Path, database: Path, location: str) -> bool:
    if old == database.parent or _holds(old, database):
        return False
    inside = location[location.index("/mlruns") :]
    return (Path(f"{database.parent}{inside}").exists() or (old / database.name).exists()
            or not old.exists())  # fmt: skip


def _artifact_root(location: str | None) -> str | None:
    """``file:///a/b/mlruns/3`` or ``/a/b/mlruns/3`` -> ``/a/b``; else ``None``."""
    match = re.fullmatch(r"(?:file://)?(/.*?)/mlruns(?:/.*)?", location or "")
    return match.group(1) if match else None


def _holds(folder: Path, database: Path) -> bool:
    try:
        return (folder / database.name).samefile(database)
    except OSError:
        return False


@contextlib.contextmanager
def mlflow_errors(uri: str, doing: str, option: str = "tracking.uri") -> Iterator[None]:
    """MLflow's, SQLAlchemy's and the network's exceptions -> one ``TrackingError`` line."""
    try:
        yield
    except TrackingError:
        raise
    except Exception as error:  # noqa: BLE001 - MLflow raises many types; all are store failures
        if not _is_store_error(error):
            raise
        raise TrackingError(f"MLflow store {uri}: {doing}: {first_line(error)}: check {option}"
                            f"{_without_tracking(option)}") from None  # fmt: skip


def _is_store_error(error: Exception) -> bool:
    names = {cls.__module__.split(".", 1)[0] for cls in type(error).__mro__}
    return bool(names & {"mlflow", "sqlalchemy", "sqlite3", "requests", "urllib3"}) or isinstance(
        error, OSError
    )


# MLflow's SQL store adds a dataset by look-up-then-insert: two runs of a sweep that log the same
# dataset at once can both miss it, and the second insert breaks the unique key. A new try finds
# the row the other run made.
_DATASET_ATTEMPTS = 3
_DUPLICATE_KEY = re.compile(r"duplicate key value|UNIQUE constraint failed|Duplicate entry",
                            re.IGNORECASE)  # fmt: skip


def _is_duplicate_key(error: Exception) -> bool:
    """PostgreSQL's, SQLite's or MySQL's unique-key violation, as MLflow's client reports it."""
    return bool(_DUPLICATE_KEY.search(str(error)))


def _guarded(method):
    """A ``RunTracker`` method whose store failures become one ``TrackingError``."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with mlflow_errors(self.tracking_uri, f"run {self.run_id}: {method.__name__} failed"):
            return method(self, *args, **kwargs)

    return wrapper


class RunTracker:
    """One MLflow run, logged through an explicit ``MlflowClient`` (from ``open_client``).

    The run carries the host and process that logs it; a run of this host whose process is
    gone (killed by SIGKILL, or the machine lost power) is marked FAILED when the next run of
    its experiment starts.

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
        self.client = open_client(tracking_uri, write=True)
        self.tracking_uri = self.client.tracking_uri
        self.run_id = run_id
        owner = {"recsys.host": socket.gethostname(), "recsys.pid": str(os.getpid())}
        with mlflow_errors(self.tracking_uri, "cannot start a run"):
            if run_id is not None:  # an existing run, continued (a resumed study's parent)
                self.client.update_run(run_id, status="RUNNING")
                self.set_tags(owner)
                return
            database = sqlite_path(self.tracking_uri)
            if database is not None:
                with folder_lock(database.parent):
                    relocate_artifacts(database)
            experiment_id = _experiment_id(self.client, experiment)
            fail_orphans(self.client, experiment_id)
            tags = owner | run_source() | ({} if parent_run_id is None
                                           else {"mlflow.parentRunId": parent_run_id})  # fmt: skip
            self.run_id = self.client.create_run(experiment_id, run_name=run_name,
                                                 tags=tags).info.run_id  # fmt: skip

    @_guarded
    def log_params(self, params: Mapping[str, object]) -> None:
        from mlflow.entities import Param

        entries = [Param(key, str(value)[:_MAX_PARAM_LENGTH]) for key, value in params.items()]
        for start in range(0, len(entries), _BATCH):
            self.client.log_batch(self.run_id, params=entries[start : start + _BATCH])

    @_guarded
    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        entries = [Metric(mlflow_key(k), float(v), stamp, step) for k, v in metrics.items()]
        for start in range(0, len(entries), 10 * _BATCH):
            self.client.log_batch(self.run_id, metrics=entries[start : start + 10 * _BATCH])

    @_guarded
    def set_tags(self, tags: Mapping[str, object]) -> None:
        from mlflow.entities import RunTag

        entries = [RunTag(key, str(value)) for key, value in tags.items()]
        self.client.log_batch(self.run_id, tags=entries)

    @_guarded
    def describe(self, text: str) -> None:
        """The run's description, shown on its page in the MLflow UI (markdown)."""
        self.client.set_tag(self.run_id, "mlflow.note.content", text)

    @_guarded
    def log_dataset(self, name: str, digest: str, source: str, profile: Mapping[str, object],
                    context: str) -> None:  # fmt: skip
        """The data a run used, as an MLflow dataset input (the UI's "Datasets used" column):
        ``digest`` identifies its content, ``context`` its role (``train``, ``split``)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name=name, digest=digest, source_type="local", source=source,
                          profile=json.dumps(dict(profile), default=str))  # fmt: skip
        tags = [InputTag(key="mlflow.data.context", value=context)]
        for attempt in range(_DATASET_ATTEMPTS):
            try:
                self.client.log_inputs(self.run_id, [DatasetInput(dataset=dataset, tags=tags)])
                return
            except Exception as error:
                if attempt + 1 == _DATASET_ATTEMPTS or not _is_duplicate_key(error):
                    raise
                log.info("dataset %s was created by a parallel run: logging it again", name)

    @_guarded
    def log_model(self, name: str, save: Callable[[Path, Model], Path]) -> str:
        """Log an MLflow model of this run: the run page's *Logged models* and the experiment's
        *Models* tab list it, and ``runs:/<run id>/<name>`` or ``models:/<model id>`` load it
        (files put under the run's own artifacts are none of these). ``save(folder, metadata)``
        writes the model into the empty ``folder`` and returns the model's folder; ``metadata``
        (an ``mlflow.models.Model``) carries the run's and the model's ids into its MLmodel
        file. Returns the model's id."""
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.models import Model

        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        model = self.client.create_logged_model(experiment_id, name=name, source_run_id=self.run_id)
        metadata = Model(artifact_path=model.artifact_location, run_id=self.run_id,
                         model_uuid=model.model_id, model_id=model.model_id)  # fmt: skip
        try:
            with tempfile.TemporaryDirectory() as folder:
                self.client.log_model_artifacts(model.model_id, str(save(Path(folder), metadata)))
            self.client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step=0)])
        except Exception:
            self.client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            raise
        self.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        return model.model_id

    @_guarded
    def log_artifacts(self, folder: str | os.PathLike, path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(folder), path)

    @_guarded
    def end(self, failed: bool = False, reason: str | None = None) -> None:
        """Close the run FINISHED, or FAILED with ``reason`` as its ``recsys.failure`` tag."""
        from mlflow.entities import RunStatus

        if failed and reason:
            self.set_tags({"recsys.failure": reason[:_MAX_PARAM_LENGTH]})
        status = RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
        self.client.set_terminated(self.run_id, status)

    def fail(self, reason: str) -> None:
        """Close the run FAILED; a store that fails too is logged, not raised (the first error
        is the one the user needs)."""
        try:
            self.end(failed=True, reason=reason)
        except TrackingError as error:
            log.warning("could not mark run %s FAILED: %s", self.run_id, error)


# -- a parent run per sweep ------------------------------------------------------------------
PARENT_FILE = "mlflow_parent_run.json"  # in a multirun's sweep folder: the parent's run id


class SweepParentRun(Callback):
    """A Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``): a multirun (``-m``) gets
    one MLflow parent run, and each of its jobs' runs is nested under it (the runs view then
    shows a benchmark as one row that opens). The parent's id is written into the sweep folder,
    where every job finds it, whatever the launcher (in process, joblib, submitit)."""

    def __init__(self) -> None:
        self.tracker: RunTracker | None = None

    def on_multirun_start(self, config, **kwargs) -> None:
        if not config.tracking.enabled:
            return
        folder = Path(config.hydra.sweep.dir)
        overrides = list(config.hydra.overrides.task)
        try:
            self.tracker = RunTracker(config.tracking.uri, config.tracking.experiment,
                                      sweep_name(overrides))  # fmt: skip
            self.tracker.set_tags({"recsys.sweep": "true", "sweep.dir": str(folder),
                                   "command": " ".join(["python -m recsys.train -m", *overrides])})
        except RecsysError as error:
            print_error(error)
            sys.exit(1)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / PARENT_FILE, json.dumps({"run_id": self.tracker.run_id}))
        # Hydra skips on_multirun_end when a job raises (its launcher re-raises the job's
        # error): the parent would stay RUNNING. The process's exit closes it then.
        atexit.register(self.close, stopped=True)

    def on_multirun_end(self, config, **kwargs) -> None:
        self.close()

    def close(self, stopped: bool = False) -> None:
        """End the parent FINISHED if every job's run finished, else FAILED; ``stopped``: the
        sweep ended early (a job raised), FAILED whatever its runs say."""
        if self.tracker is None:
            return
        tracker, self.tracker = self.tracker, None
        try:
            with mlflow_errors(tracker.tracking_uri, f"sweep run {tracker.run_id}"):
                self._end(tracker, stopped)
        except TrackingError as error:
            log.warning("could not close the sweep's run: %s", error)

    @staticmethod
    def _end(tracker: RunTracker, stopped: bool) -> None:
        client, run_id = tracker.client, tracker.run_id
        parent = client.get_run(run_id)
        children = client.search_runs([parent.info.experiment_id],
                                      f"tags.mlflow.parentRunId = '{run_id}'",
                                      max_results=10_000)  # fmt: skip
        finished = sum(run.info.status == "FINISHED" for run in children)
        stop = ", stopped by a job's error" if stopped else ""
        tracker.describe(f"Sweep of {len(children)} runs ({finished} finished{stop}): "
                         f"`{parent.data.tags['command']}`")  # fmt: skip
        reason = f"{len(children) - finished} runs did not finish"
        if stopped:
            reason = (f"the sweep stopped at a job's error (Hydra's log names it): {finished} of "
                      f"{len(children)} runs started finished")  # fmt: skip
        tracker.end(failed=stopped or finished < len(children), reason=reason)



def sweep_name(overrides: list[str]) -> str:
    """The parent run's name: what the sweep was asked for (``sweep: experiment=benchmark``,
    ``sweep: model=als,ease seed=1,2``), without where it ran (``data.dir``, ``tracking.*``,
    ``cache.*``, ``hydra/launcher``: tags of each run); its start time is the run's own."""
    asked = [o for o in overrides
             if not o.lstrip("+~").startswith(("tracking.", "hydra", *MACHINE_KEYS))]  # fmt: skip
    name = f"sweep: {' '.join(asked)}" if asked else "sweep: defaults"
    return name if len(name) <= _MAX_RUN_NAME else name[: _MAX_RUN_NAME - 1] + "…"


def sweep_parent_run_id() -> str | None:
    """The parent run of the multirun this job belongs to (``None`` outside a multirun)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):  # not inside a Hydra app
        return None
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    path = Path(hydra_cfg.sweep.dir) / PARENT_FILE
    return json.loads(path.read_text())["run_id"] if path.exists() else None


EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
# A saved view of the runs table, in the runs page's *Views* menu or opened by its address
# (``#/experiments/<id>/runs?viewStateShareKey=recsys``): the columns a benchmark is read by.
# MLflow 3's UI keeps saved views as experiment tags ``mlflow.sharedViewState.<key>`` holding
# ``{name, createdAt, state}``, the state a JSON string; a UI that knows no views ignores it.
RUNS_VIEW_KEY, RUNS_VIEW_NAME = "recsys", "recsys: NDCG, recall, fit time"
RUNS_VIEW_COLUMNS = ("attributes.`Dataset`", "attributes.`Models`", "params.`model_name`",
                     "metrics.`val/ndcg_at_10`", "metrics.`test/ndcg_at_10`",
                     "metrics.`test/recall_at_10`", "metrics.`time/fit_seconds`")  # fmt: skip


def runs_view(created_ms: int) -> str:
    """The saved view ``RUNS_VIEW_KEY``'s tag value: runs newest first, ``RUNS_VIEW_COLUMNS``."""
    state = {
        "searchFilter": "", "orderByKey": "attributes.start_time", "orderByAsc": False,
        "startTime": "ALL", "lifecycleFilter": "Active", "datasetsFilter": [],
        "modelVersionFilter": "All Runs", "selectedColumns": list(RUNS_VIEW_COLUMNS),
        "columnOrder": [], "columnWidths": {}, "groupBy": None, "groupsExpanded": {},
    }  # fmt: skip
    return json.dumps({"name": RUNS_VIEW_NAME, "createdAt": created_ms, "updatedAt": created_ms,
                       "state": json.dumps(state)})  # fmt: skip


def _experiment_id(client, name: str) -> str:
    """The experiment's id; a new one keeps its artifacts beside a SQLite store's database.
    It is tagged a model-training experiment (MLflow 3.x UIs before the GenAI / Model training
    switch open it on the runs table; later ones open the switch's last choice, GenAI at
    first) and given the saved runs view ``RUNS_VIEW_KEY``."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        database = sqlite_path(client.tracking_uri)
        location = (None if database is None
                    else str(database.parent / "mlruns" / _folder_name(name)))  # fmt: skip
        try:
            client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by a parallel run of the same sweep
            pass
        experiment = client.get_experiment_by_name(name)
    view = runs_view(int(time.time() * 1000))
    tags = {EXPERIMENT_KIND: MODEL_TRAINING, f"mlflow.sharedViewState.{RUNS_VIEW_KEY}": view}
    for key, value in tags.items():
        if experiment.tags.get(key) is None:
            try:
                client.set_experiment_tag(experiment.experiment_id, key, value)
            except MlflowException:  # set meanwhile by a parallel run (a unique key in SQL)
                pass
    return experiment.experiment_id


def _folder_name(name: str) -> str:
    """A folder name for experiment ``name``: itself if safe, else a slug and a short hash."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"
    if slug == name:
        return slug
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def fail_orphans(client, experiment_id: str) -> list[str]:
    """Mark FAILED the RUNNING runs of this host whose process is gone (SIGKILL, power loss):
    nothing else will ever close them. Returns their ids."""
    host = socket.gethostname()
    runs = client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000)
    orphans = [r for r in runs if r.data.tags.get("recsys.host") == host
               and not _alive(r.data.tags.get("recsys.pid"))]  # fmt: skip
    for orphan in orphans:
        pid = orphan.data.tags.get("recsys.pid")
        client.set_tag(orphan.info.run_id, "recsys.failure",
                       f"process {pid} ended without closing the run (killed)")  # fmt: skip
        client.set_terminated(orphan.info.run_id, "FAILED")
        log.warning("run %s was left RUNNING by process %s, which is gone: marked FAILED",
                    orphan.info.run_id, pid)  # fmt: skip
    return [r.info.run_id for r in orphans]


def _alive(pid: str | None) -> bool:
    """Whether process ``pid`` of this host still runs (unknown pids count as alive)."""
    return pid is None or not pid.isdigit() or process_exists(int(pid))


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


def run_source() -> dict[str, str]:
    """Who started the run and from what, in the tags MLflow's UI shows as a run's *User* and
    *Source*: ``python -m recsys.train`` gives source ``recsys.train``."""
    import getpass

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    source = spec.name.removesuffix(".__main__") if spec else Path(sys.argv[0] or "python").name
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's)
        user = str(os.getuid())
    return {"mlflow.user": user, "mlflow.source.name": source, "mlflow.source.type": "LOCAL"}


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
