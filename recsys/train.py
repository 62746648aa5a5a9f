"""Entry point: ``python -m recsys.train model=als`` (add ``-m`` and lists for a sweep).

``run(cfg)`` does the work (data -> split -> model -> evaluation -> MLflow) and returns the
metrics; the Hydra ``main`` only calls it and hands the objective to sweepers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from recsys import artifacts
from recsys.cache import ModelCache, cache_dir, cache_key
from recsys.config import (
    CONF_DIR,
    build_model,
    check_config,
    check_ks,
    check_overrides,
    data_source,
    load_split,
)
from recsys.errors import ConfigError, RecsysError, print_error
from recsys.memory import check_fits, size_text
from recsys.metrics import METRICS, Evaluation, evaluate
from recsys.models.base import Recommender
from recsys.rng import seed_everything
from recsys.split import Split
from recsys.tracking import (
    MACHINE_KEYS,
    RunTracker,
    environment_listing,
    flatten,
    git_state,
    hardware,
    open_client,
    package_versions,
    sweep_parent_run_id,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """What one run measured: flat metrics (``val/ndcg@10``, ``time/fit_seconds``, ...), the
    per-user evaluations, and the model that test was evaluated with (refit, if the protocol
    refits)."""

    metrics: dict[str, float]
    validation: Evaluation
    test: Evaluation
    model: Recommender


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and evaluate one model as ``cfg`` says, log it to MLflow, return its metrics.

    A pure function of ``cfg``: paths, seed and tracking store all come from it. Bad values
    fail before any work (the config, then the MLflow store, then the data and the model's
    settings); the run is created once those hold, its config logged first, and it ends
    FAILED, with the reason, on any error or on SIGINT/SIGTERM.
    """
    check_config(cfg)
    if cfg.protocol.get("revealed") is not None:
        raise ConfigError(f"protocol {cfg.protocol.name} evaluates users never seen in training, "
                          f"which a model ranks by revealed ratings or demographics, not by id: "
                          f"run python -m recsys.cold_start instead")  # fmt: skip
    if cfg.tracking.enabled:  # a dead or read-only store fails in seconds, before the data
        open_client(cfg.tracking.uri, write=True)
    prepared = load_split(cfg)
    split = prepared.split
    check_ks(cfg.ks, split.train.n_items)

    fresh_model = model_factory(cfg, prepared.data)
    model = fresh_model()
    seed_everything(cfg.seed)  # after the build: seeds torch too if the model loaded it
    log.info("split %s: %s", split.fingerprint[:12], split.sizes())
    # a model too large for this machine refuses before an MLflow run exists (a cached fit
    # of it would not fit either: its state is what the check counts)
    check_fit_memory(model, split, cfg.protocol.refit, cfg.eval_batch_size, cfg.model_name,
                     cfg.memory_gb)  # fmt: skip

    tracker = None
    if cfg.tracking.enabled:
        tracker = RunTracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.run_name,
                             parent_run_id=sweep_parent_run_id())  # fmt: skip
        log.info("MLflow run %s in %s", tracker.run_id, tracker.tracking_uri)
    try:
        with signals_raise():
            if tracker is not None:
                log_config(tracker, cfg, prepared.data.ratings_sha256, split)
            on_epoch = None if tracker is None else _epoch_logger(tracker, cfg.objective)
            refit = fresh_model if cfg.protocol.refit else None
            cache = model_cache(cfg)
            key = cache_key(cfg, prepared.data.ratings_sha256, split.fingerprint)
            fitted = None if cache is None else cache.get(key)
            hit = fitted is not None
            if hit:
                log.info("fitted model from the cache (%s, entry %s): nothing trained",
                         cache.folder, key[:12])  # fmt: skip
                for epoch, record in fitted.epochs if on_epoch is not None else ():
                    on_epoch(epoch, record)  # the cached fit's curve, in this run too
            else:
                fitted = fit_selected(model, split, cfg.eval_batch_size, cfg.objective,
                                      on_epoch, refit)  # fmt: skip
                if cache is not None:
                    cache.put(key, fitted)
            if tracker is not None:
                tracker.set_tags({"cache.hit": str(hit).lower(), "cache.key": key})
            result = evaluate_fitted(fitted, split, list(cfg.ks), cfg.eval_batch_size)
            if tracker is not None:
                log_results(tracker, cfg, split, result)
    except BaseException as error:
        if tracker is not None:
            tracker.fail(failure_reason(error))
        raise
    if tracker is not None:
        tracker.end()
    print(format_table(cfg, split, result, cached=hit))
    return result.metrics


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler's time limit, ``kill``): unwinds like ``KeyboardInterrupt``,
    so the run is marked FAILED on the way out."""

    exit_code = 128 + signal.SIGTERM


@contextlib.contextmanager
def signals_raise():
    """Within the block, SIGTERM raises ``Terminated`` (Python's default ends the process at
    once, leaving the MLflow run RUNNING forever); SIGINT raises ``KeyboardInterrupt`` as
    always. Outside the main thread (signals cannot be caught there) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(f"stopped by {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def failure_reason(error: BaseException) -> str:
    """One line for a FAILED run's ``recsys.failure`` tag."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


Refit = Callable[[dict], Recommender]  # overrides -> a fresh model of the run's config


def model_factory(cfg: DictConfig, data) -> Refit:
    """``overrides -> a fresh model`` of ``cfg.model`` with the run's seed (the first fit and
    the refit both come from it)."""

    def fresh_model(overrides: dict | None = None) -> Recommender:
        node = OmegaConf.merge(cfg.model, overrides) if overrides else cfg.model
        return build_model(node, cfg.seed, data)

    return fresh_model


@dataclass(frozen=True)
class Fitted:
    """What training produced, which the model cache keeps: the model selected on validation,
    the one test evaluates (its refit, or itself), the fit's numbers and its epoch records."""

    model: Recommender
    final: Recommender
    metrics: dict[str, float]
    epochs: list[tuple[int, dict[str, float]]]


def fit_selected(model, split: Split, batch_size: int, objective: str = "val/ndcg@10",
                 on_epoch=None, refit: Refit | None = None) -> Fitted:  # fmt: skip
    """Fit on train (iterative models early-stop on the validation ``objective``); with
    ``refit`` (``overrides -> a fresh model``), train the chosen settings again on train +
    validation (an iterative model for its best number of epochs). Callers check the memory
    first (``check_fit_memory``)."""
    train, validation = split.train.to_csr(), split.validation.to_csr()
    epochs = []

    def record(epoch: int, values: dict[str, float]) -> None:
        epochs.append((epoch, dict(values)))
        if on_epoch is not None:
            on_epoch(epoch, values)

    start = time.perf_counter()
    validate = validation_metric(validation, train, objective, batch_size)
    model.fit_validated(train, validate=validate, on_epoch=record)
    metrics = {"time/fit_seconds": time.perf_counter() - start} | model.training_summary()
    seconds = [values["seconds"] for _, values in epochs if "seconds" in values]
    if seconds:  # a torch model's epochs: the pass over the training data, validation aside;
        # the median, which a first epoch's warm-up (CUDA's start, the allocator) does not move
        metrics["time/epoch_seconds"] = float(np.median(seconds))
    final = model
    metrics["train/refit"] = float(refit is not None and validation.nnz > 0)
    if metrics["train/refit"]:
        start = time.perf_counter()
        final = refit(model.refit_overrides()).fit(train + validation)
        metrics["time/refit_seconds"] = time.perf_counter() - start
        metrics |= {key.replace("train/", "refit/"): value
                    for key, value in final.training_summary().items()}  # fmt: skip
    return Fitted(model, final, metrics, epochs)


def check_fit_memory(model, split: Split, refit: bool, batch_size: int, name: str,
                     memory_gb: float | None) -> None:  # fmt: skip
    """``ConfigError`` if fitting ``model`` on the larger of its training matrices (train, or
    train + validation for a refit) needs more than ``memory_gb`` beyond what is loaded
    (``None``: the memory available now); else log the need."""
    matrix = split.train.to_csr()
    if refit:
        matrix = matrix + split.validation.to_csr()
    need = check_fits(model, name, matrix, batch_size, memory_gb)
    log.info("memory: about %s needed (%s)", size_text(need.total), need.describe())


def evaluate_fitted(fitted: Fitted, split: Split, ks: list[int], batch_size: int) -> RunResult:
    """Validation metrics of the selected model (train excluded) and test metrics of the final
    one, evaluated once, with train and validation items excluded (the user has seen both)."""
    train, validation, test = (split.train.to_csr(), split.validation.to_csr(),
                               split.test.to_csr())  # fmt: skip
    user_ids = split.train.user_ids
    metrics = dict(fitted.metrics)
    start = time.perf_counter()
    val = evaluate(fitted.model, validation, train, ks, user_ids, batch_size)
    metrics["time/val_eval_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    tst = evaluate(fitted.final, test, train + validation, ks, user_ids, batch_size)
    metrics["time/test_eval_seconds"] = time.perf_counter() - start
    metrics |= {f"val/{k}": v for k, v in val.summary.items()}
    metrics |= {f"test/{k}": v for k, v in tst.summary.items()}
    return RunResult(metrics=metrics, validation=val, test=tst, model=fitted.final)


def train_and_evaluate(model, split: Split, ks: list[int], batch_size: int,
                       objective: str = "val/ndcg@10", on_epoch=None,
                       refit: Refit | None = None) -> RunResult:  # fmt: skip
    """``fit_selected`` then ``evaluate_fitted``: test is evaluated once, after training, on
    the refit model if there is one."""
    fitted = fit_selected(model, split, batch_size, objective, on_epoch, refit)
    return evaluate_fitted(fitted, split, ks, batch_size)


def validation_metric(validation, train, objective: str, batch_size: int):
    """``model -> value`` of the validation objective (``val/ndcg@10``), for early stopping."""
    part, _, name = objective.partition("/")
    metric, _, k = name.partition("@")
    if part != "val" or metric not in METRICS or not k.isdigit():
        raise ConfigError(f"objective must look like val/ndcg@10 (a validation metric of "
                          f"{', '.join(METRICS)}), got {objective!r}")  # fmt: skip

    def validate(model) -> float:
        if validation.nnz == 0:  # only iterative models call this
            raise ConfigError("early stopping needs validation interactions: set "
                              "split.val_ratio (or split.val_k) above 0")  # fmt: skip
        return evaluate(model, validation, train, [int(k)], batch_size=batch_size).summary[name]

    return validate


def _epoch_logger(tracker: RunTracker, objective: str):
    """Per-epoch training loss, penalty, seconds (validation aside) and validation objective,
    logged with the epoch as step."""

    def log_epoch(epoch: int, record: dict[str, float]) -> None:
        names = {"loss": "epoch/loss", "penalty": "epoch/penalty", "seconds": "epoch/seconds",
                 "val": f"epoch/{objective}"}  # fmt: skip
        tracker.log_metrics({names[k]: v for k, v in record.items()}, step=epoch)

    return log_epoch



def model_cache(cfg: DictConfig) -> ModelCache | None:
    """The fitted-model cache ``cfg.cache`` describes, or ``None`` when it is disabled."""
    if not cfg.cache.enabled:
        return None
    return ModelCache(cache_dir(cfg.cache.dir), cfg.cache.max_gb)


def log_config(tracker: RunTracker, cfg: DictConfig, data_sha256: str, split: Split) -> None:
    """What is needed to rerun and audit the run, logged before training (a run that fails
    still says which config failed): config, data and split as dataset inputs, fingerprints,
    versions. Paths and the tracking URI are tags: they say where it ran, not what it was."""
    resolved = flatten(OmegaConf.to_container(cfg, resolve=True))
    params = {k: v for k, v in resolved.items() if k not in MACHINE_KEYS}
    tracker.log_params(params | {f"split.size.{k}": v for k, v in split.sizes().items()})
    tracker.set_tags(
        {
            "model": cfg.model_name,
            "protocol": cfg.protocol.name,
            "seed": cfg.seed,
            "data.name": cfg.data.name,
            "data.sha256": data_sha256,
            "split.fingerprint": split.fingerprint,
            "command": rerun_command(),
        }
        | {f"machine.{key}": str(resolved[key]) for key in MACHINE_KEYS if key in resolved}
        | git_state()
        | package_versions()
        | hardware()
    )
    source = data_source(cfg.data)
    tracker.log_dataset(cfg.data.name, data_sha256[:16], source,
                        {"interactions": sum(split.sizes().values()), "users": split.train.n_users,
                         "items": split.train.n_items, "sha256": data_sha256}, "train")  # fmt: skip
    tracker.log_dataset(f"{cfg.data.name}/{cfg.protocol.name}-split-seed{cfg.seed}",
                        split.fingerprint[:16], source,
                        split.sizes() | {"fingerprint": split.fingerprint}, "split")  # fmt: skip


def log_results(tracker: RunTracker, cfg: DictConfig, split: Split, result: RunResult) -> None:
    """Metrics, per-user metrics and embeddings, and a description with the headline."""
    has_embeddings = cfg.tracking.log_embeddings and result.model.user_embeddings is not None
    tracker.set_tags({"has_embeddings": str(bool(has_embeddings)).lower()})
    tracker.log_metrics(result.metrics)
    tracker.describe(describe_run(cfg, split, result.metrics))
    with tempfile.TemporaryDirectory() as folder:
        write_artifacts(Path(folder), cfg, split, result)
        tracker.log_artifacts(folder)
    if has_embeddings and cfg.tracking.log_model:
        from recsys.pyfunc import save_model

        rated = split.train.to_csr() + split.validation.to_csr() + split.test.to_csr()
        vectors = embeddings(split, result.model)
        tracker.log_model("model", lambda folder, meta: save_model(folder, vectors, rated, meta))


def write_artifacts(folder: Path, cfg: DictConfig, split: Split, result: RunResult):
    """The run's files in the layout of ``recsys.artifacts`` (embeddings: of the model that
    test evaluated)."""
    model = result.model
    vectors = new_users = None
    if cfg.tracking.log_embeddings and model.user_embeddings is not None:
        vectors = embeddings(split, model)
        if hasattr(model, "new_user_parts"):  # two-tower's user tower, Mult-VAE's encoder
            new_users = model.new_user_parts()
    artifacts.write_run_files(
        folder,
        config=OmegaConf.to_yaml(cfg, resolve=True),
        environment=environment_listing(),
        per_user={"validation": result.validation.per_user, "test": result.test.per_user},
        # for the report's popularity-bias figure: the test rankings and each item's number
        # of training interactions
        test_top_items=result.test.top_items,
        train_item_counts=np.bincount(split.train.item, minlength=split.train.n_items),
        embeddings=vectors,
        new_users=new_users,
    )


def embeddings(split: Split, model: Recommender) -> dict[str, np.ndarray]:
    """A model's user and item vectors with their MovieLens ids (``recsys.artifacts``'s names)."""
    return {"user_embeddings": model.user_embeddings, "item_embeddings": model.item_embeddings,
            "user_ids": split.train.user_ids, "item_ids": split.train.item_ids}  # fmt: skip


def describe_run(cfg: DictConfig, split: Split, metrics: dict[str, float]) -> str:
    """The run's headline, for its MLflow page: model, data, protocol, seed and the objective."""
    k = 10 if 10 in cfg.ks else cfg.ks[0]
    trained = "refit on train + validation" if metrics.get("train/refit") else "train part only"
    return (f"**{cfg.model_name}** on {cfg.data.name}, protocol `{cfg.protocol.name}`, seed "
            f"{cfg.seed}: test NDCG@{k} **{metrics.get(f'test/ndcg@{k}', float('nan')):.4f}**, "
            f"validation {cfg.objective} {metrics.get(cfg.objective, float('nan')):.4f} "
            f"({trained}; split `{split.fingerprint[:12]}`; "
            f"fit {metrics['time/fit_seconds']:.1f} s).\n\nRerun: `{rerun_command()}`")


def rerun_command() -> str:
    """The command line that reproduces this run (at the logged git commit)."""
    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:  # composed outside a Hydra app (tests, notebooks)
        overrides = []
    return " ".join(["python -m recsys.train", *overrides])


def format_table(cfg: DictConfig, split: Split, result: RunResult, cached: bool = False) -> str:
    metrics = result.metrics
    header = f"{'part':<11}{'k':>3}" + "".join(f"{m:>10}" for m in (*METRICS, "coverage"))
    refit = (f", refit on train + validation={metrics['time/refit_seconds']:.2f}s"
             if metrics.get("train/refit") else "")  # fmt: skip
    refit += ", fitted models from the cache: nothing trained" if cached else ""
    lines = [
        f"{cfg.data.name}  protocol={cfg.protocol.name}  model={cfg.model_name}  seed={cfg.seed}"
        f"  split={split.fingerprint[:12]}  fit={metrics['time/fit_seconds']:.2f}s{refit}",
        header,
    ]
    for part, prefix in (("validation", "val"), ("test", "test")):
        for k in cfg.ks:
            values = [metrics[f"{prefix}/{m}@{k}"] for m in (*METRICS, "coverage")]
            lines.append(f"{part:<11}{k:>3}" + "".join(f"{v:>10.4f}" for v in values))
    users = int(metrics["test/n_users"])
    k = cfg.objective.rpartition("@")[2]  # one of ks (check_config)
    lines.append(f"test NDCG@{k} = {metrics[f'test/ndcg@{k}']:.4f} over {users} users")
    return "\n".join(lines)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    with exit_on_error():
        metrics = run(cfg)
    return metrics.get(cfg.objective)


@contextlib.contextmanager
def exit_on_error():
    """What a user can fix is printed as ``error:`` lines and exits 1; SIGINT and SIGTERM exit
    130 and 143 with one line (tracebacks only with ``HYDRA_FULL_ERROR=1``)."""
    try:
        yield
    except RecsysError as error:
        print_error(error)
        sys.exit(1)
    except (KeyboardInterrupt, Terminated) as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print_error(RecsysError(f"{failure_reason(error)}: the MLflow run, if any, is marked "
                                f"FAILED"))  # fmt: skip
        sys.exit(getattr(error, "exit_code", 130))


def cli(config_name: str = "config", entry=None) -> None:
    """``python -m recsys.train``: the command line's overrides are checked (unknown keys and
    options, with the nearest match) before Hydra runs ``entry``."""
    with exit_on_error():
        check_overrides(sys.argv[1:], config_name)
    (entry or main)()


if __name__ == "__main__":
    # the module's own names, not this __main__ copy's: the fitted-model cache pickles
    # recsys.train.Fitted, and joblib or submitit send recsys.train.main to other processes,
    # where no __main__ holds them (a joblib sweep failed with "Can't pickle __main__.Fitted")
    from recsys.train import cli as module_cli

    module_cli()
