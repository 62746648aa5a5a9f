"""Hyperparameter studies with Optuna: ``python -m recsys.tune model=bpr [tune.trials=30]``.

A study maximises the validation ``objective`` (``val/ndcg@10``) under the run's protocol:
every trial trains on the training part and is scored on the validation part; test is never
evaluated. The search space of a model is ``conf/search/<model>.yaml``, next to its config.

- Sampling: the model's current default first (so a study never ends below it), then TPE,
  seeded (``tune.seed``), after ``tune.startup_trials`` random trials. Suggested numbers are
  rounded to 3 significant digits before the trial trains, so the winner written back is
  exactly what was evaluated.
- Pruning: iterative models report their validation value every epoch; a trial whose value is
  below the median of earlier trials at the same epoch is stopped (after ``tune.prune_after``
  epochs, once ``tune.startup_trials`` trials finished).
- Validation: a trial's value is the mean over the splits of ``tune.seeds`` (default: three
  seeds for models without a trainer, where one validation split proved too noisy to choose
  by, one for the torch models, for their cost); pruning follows the first split's curve.
- Confirmation: a study on one split then validates its ``tune.confirm_top`` best settings and
  the previous default on two more splits; the best mean over the three wins.
- Budget: ``tune.trials`` finished (complete or pruned) trials; ``null`` gives 50 to models
  without a trainer and 30 to the torch models.
- Resumable: the study lives in Optuna's storage (``tune.storage``, a SQLite file by default).
  Running the same command again continues it: finished trials count toward the budget, a
  trial left RUNNING by a killed process (no heartbeat for 6 s) is marked FAILED and tried
  again, and the sampler is seeded by trial number, so the resumed study draws what an
  uninterrupted one would have.
- MLflow: the study is a parent run (experiment ``<data>-tuning``) with one child run per trial.
- Results: the study's report (``tune.report_dir``: best settings, every trial, optimisation
  history and parameter importance figures) and, with ``tune.write_back``, the winner written
  into ``conf/model/<model>.yaml`` with a comment naming the study.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from recsys.config import (
    CONF_DIR,
    SplitData,
    build_model,
    check_config,
    check_values,
    is_int,
    is_seed,
    load_split,
)
from recsys.errors import ConfigError, RecsysError, first_line
from recsys.files import atomic_write_text
from recsys.memory import check_fits
from recsys.metrics import evaluate
from recsys.rng import seed_everything
from recsys.tracking import (
    RunTracker,
    flatten,
    git_state,
    open_client,
    package_versions,
    sqlite_path,
)
from recsys.train import cli, exit_on_error, failure_reason, signals_raise, validation_metric

log = logging.getLogger(__name__)

SEARCH_DIR = CONF_DIR / "search"
KINDS = ("int", "float", "categorical")
PROVENANCE = "# Tuned by `python -m recsys.tune"


# -- search spaces ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    """One dimension of a search space: ``kind`` int, float or categorical."""

    key: str  # in the model config, dotted: "factors", "trainer.lr"
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    def suggest(self, trial):
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        value = trial.suggest_float(self.key, self.low, self.high, log=self.log)
        return float(f"{value:.3g}")  # what the trial trains with, and what is written back

    def distribution(self):
        """The Optuna distribution ``suggest`` draws from (what a stored trial records)."""
        from optuna import distributions

        if self.kind == "categorical":
            return distributions.CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return distributions.FloatDistribution(self.low, self.high, log=self.log)


def search_space(model: str) -> list[Parameter]:
    """The parameters of ``conf/search/<model>.yaml`` (``ConfigError`` naming a bad entry)."""
    path = SEARCH_DIR / f"{model}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in SEARCH_DIR.glob("*.yaml"))
        raise ConfigError(f"no search space for model {model!r} ({path} missing): models with "
                          f"one: {', '.join(known)}")  # fmt: skip
    space = []
    for key, spec in OmegaConf.to_container(OmegaConf.load(path)).items():
        spec = dict(spec)
        kind = spec.pop("type", None)
        if kind not in KINDS:
            raise ConfigError(f"{path}: {key}.type must be one of {', '.join(KINDS)}, got {kind!r}")
        if "choices" in spec:
            spec["choices"] = tuple(spec["choices"])
        try:
            space.append(Parameter(key, kind, **spec))
        except TypeError as error:
            raise ConfigError(f"{path}: {key}: {error}") from None
    return space


def current_values(model_cfg: DictConfig, space: list[Parameter]) -> dict:
    """The model config's values of the searched settings (its current default)."""
    return {p.key: OmegaConf.select(model_cfg, p.key) for p in space}


def with_params(model_cfg: DictConfig, params: dict) -> DictConfig:
    """``model_cfg`` with the dotted ``params`` set (``{"trainer.lr": 0.01}``)."""
    node = OmegaConf.create(OmegaConf.to_container(model_cfg))
    for key, value in params.items():
        if OmegaConf.select(node, key) is None:
            raise ConfigError(f"search space key model.{key} is not a setting of the model")
        OmegaConf.update(node, key, value)
    return node


# -- one study --------------------------------------------------------------------------------
def budget(cfg: DictConfig) -> int:
    if cfg.tune.trials is not None:
        return int(cfg.tune.trials)
    return 30 if "trainer" in cfg.model else 50


def _is_seeds(value) -> bool:
    return value is None or (isinstance(value, ListConfig | list) and len(value) > 0
                             and all(is_seed(seed) for seed in value))  # fmt: skip


_TUNE_RULES = [
    ("tune.trials", "null (50 trials; 30 for a torch model) or a positive integer",
     lambda v: v is None or is_int(v, 1)),
    ("tune.study", "a name", lambda v: isinstance(v, str) and v != ""),
    ("tune.storage", "an Optuna storage URL, e.g. sqlite:///optuna.db",
     lambda v: isinstance(v, str) and "://" in v),
    ("tune.seed", "an integer from 0 to 2**32 - 1", is_seed),
    ("tune.seeds", "null or a list of split seeds, e.g. [1,2,3]", _is_seeds),
    ("tune.confirm_top", "an integer >= 0 (0: no confirmation)", lambda v: is_int(v, 0)),
    ("tune.confirm_seeds", "null or a list of split seeds, e.g. [2,3]", _is_seeds),
    ("tune.startup_trials", "an integer >= 0", lambda v: is_int(v, 0)),
    ("tune.prune_after", "an integer >= 0", lambda v: is_int(v, 0)),
    ("tune.write_back", "true or false", lambda v: isinstance(v, bool)),
    ("tune.report_dir", "a folder path", lambda v: isinstance(v, str) and v != ""),
]  # fmt: skip


def check_tune(cfg: DictConfig) -> None:
    """The ``tune.*`` values checked before any work, one ``ConfigError`` line each."""
    problems = check_values(cfg, _TUNE_RULES)
    if problems:
        raise ConfigError("\n".join(problems))


HEARTBEAT_SECONDS, GRACE_SECONDS = 2, 6  # a trial without a heartbeat for 6 s was killed


def storage(url: str):
    """Optuna's RDB storage with heartbeats, so trials of a killed process can be failed; a
    storage that cannot be opened is one ``ConfigError`` line."""
    import optuna
    import sqlalchemy.exc

    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS,
                                              grace_period=GRACE_SECONDS)  # fmt: skip
        except (sqlalchemy.exc.SQLAlchemyError, ValueError, ImportError) as error:
            raise ConfigError(f"tune.storage={url}: cannot open it ({first_line(error, 200)}): "
                              f"point it at a writable folder, e.g. "
                              f"tune.storage=sqlite:///optuna.db") from None


def fail_killed_trials(study) -> None:
    """Mark FAILED the trials a killed process left RUNNING (their heartbeat stopped), so they
    are tried again; a trial another live process is running keeps beating and is left alone."""
    import optuna

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if running:
        # Optuna fails only a trial whose heartbeat went stale: one whose process was killed
        # between creating it and its first beat has none, and would stay RUNNING for ever. A
        # beat now gives every running trial a clock; a live process beats on over it
        for trial in running:
            study._storage.record_heartbeat(trial._trial_id)
        log.warning("trials marked RUNNING: waiting %d s to tell killed ones from live ones",
                    GRACE_SECONDS)  # fmt: skip
        time.sleep(GRACE_SECONDS + HEARTBEAT_SECONDS)
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9, and still there
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def recorded_study(model: str, folder: Path = CONF_DIR / "model") -> tuple[str, int] | None:
    """The study and finished trials that ``conf/model/<model>.yaml``'s tuned default records
    (its provenance note, however ``_wrap_comment`` broke its lines), or ``None`` for a default
    no study wrote."""
    header = "".join(line for line in (folder / f"{model}.yaml").read_text().splitlines(True)
                     if line.startswith("#"))  # fmt: skip
    found = re.search(r"\(study\s+(\S+)\):\s+(\d+)\s+trials", re.sub(r"\n#\s*", " ", header))
    return None if found is None else (found.group(1), int(found.group(2)))


def finished_in_storage(cfg: DictConfig) -> int:
    """Finished trials of the study ``cfg.tune.study`` in its storage so far: 0 where there is
    none (a SQLite file that does not exist is not created to find out)."""
    import optuna

    database = sqlite_path(cfg.tune.storage)
    if database is not None and not database.exists():
        return 0
    try:
        return len(_finished(optuna.load_study(study_name=cfg.tune.study,
                                               storage=storage(cfg.tune.storage))))  # fmt: skip
    except KeyError:  # no such study there
        return 0


def check_not_smaller(cfg: DictConfig, trials: int, folder: Path = CONF_DIR / "model") -> None:
    """``ConfigError`` where this study would end with fewer finished ``trials`` than the study of
    the same name that wrote the model's tuned default, and would write over that default
    (``tune.write_back``) or that study's report in ``tune.report_dir`` (a fresh clone has no
    ``optuna.db`` to resume from, so ``tune.trials=3`` starts the study over)."""
    recorded = recorded_study(cfg.model_name, folder)
    if recorded is None or recorded[0] != cfg.tune.study or trials >= recorded[1]:
        return
    report = Path(cfg.tune.report_dir) / f"{cfg.tune.study}.md"
    if not cfg.tune.write_back and not report.exists():
        return
    raise ConfigError(f"study {cfg.tune.study} wrote conf/model/{cfg.model_name}.yaml's default "
                      f"and {report} from {recorded[1]} trials; this run would replace them "
                      f"with {trials}: give tune.trials={recorded[1]} (or more), or try the "
                      f"tool apart: tune.write_back=false tune.report_dir=OTHER")  # fmt: skip


def check_space(study, space: list[Parameter], cfg: DictConfig) -> None:
    """Refuse to resume a study whose trials were drawn from another search space than
    ``conf/search/<model>.yaml`` now holds: their best would not be a best of this one."""
    expected = {p.key: p.distribution() for p in space}
    if any(t.distributions != expected for t in _finished(study)):
        raise ConfigError(
            f"study {cfg.tune.study} in {cfg.tune.storage} was run on another search space than "
            f"conf/search/{cfg.model_name}.yaml holds now: start a new study with "
            f"tune.study={cfg.tune.study}-2, or delete it (optuna delete-study --study-name "
            f"{cfg.tune.study} --storage {cfg.tune.storage})")


def tune(cfg: DictConfig):
    """Run (or resume) the study ``cfg.tune.study`` to its budget; return the Optuna study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = search_space(cfg.model_name)
    with_params(cfg.model, {p.key: 0 for p in space})  # every key exists, before any work
    check_not_smaller(cfg, max(budget(cfg), finished_in_storage(cfg)))
    splits = {seed: load_split(OmegaConf.merge(cfg, {"seed": seed}))
              for seed in tuning_seeds(cfg)}  # fmt: skip
    study = optuna.create_study(
        study_name=cfg.tune.study, storage=storage(cfg.tune.storage), load_if_exists=True,
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=cfg.tune.startup_trials,
                                           n_warmup_steps=cfg.tune.prune_after),
    )  # fmt: skip
    check_space(study, space, cfg)
    fail_killed_trials(study)
    if not study.trials:  # the current default is the first trial: a study never loses to it
        study.enqueue_trial(current_values(cfg.model, space), skip_if_exists=True)
    finished = _finished(study)
    remaining = max(budget(cfg) - len(finished), 0)
    log.info("study %s: %d finished trials, %d to run", cfg.tune.study, len(finished), remaining)
    parent = _parent_run(cfg, study) if cfg.tracking.enabled else None
    try:
        for _ in range(remaining):  # one at a time, so the budget counts finished trials
            # TPE reads the history from the storage; seeding it by the trial's number makes a
            # resumed study draw what the uninterrupted one would have drawn
            study.sampler = optuna.samplers.TPESampler(
                seed=cfg.tune.seed + len(study.trials), n_startup_trials=cfg.tune.startup_trials)
            study.optimize(lambda trial: objective(trial, cfg, space, splits, parent),
                           n_trials=1, catch=())  # fmt: skip
        if len(_finished(study)) == len(_pruned(study)):  # no trial completed: no best
            raise RecsysError(f"study {cfg.tune.study}: no trial completed ({len(_pruned(study))} "
                              f"pruned): let trials run longer (tune.prune_after) or give more "
                              f"(tune.trials)")  # fmt: skip
        if parent is not None:
            parent.log_metrics({cfg.objective: study.best_value,
                                "trials/finished": len(_finished(study)),
                                "trials/pruned": len(_pruned(study))})  # fmt: skip
    except BaseException as error:
        if parent is not None:
            parent.fail(failure_reason(error))
        raise
    if parent is not None:
        parent.end()
    return study


def objective(trial, cfg: DictConfig, space: list[Parameter], splits: dict[int, SplitData],
              parent: RunTracker | None) -> float:  # fmt: skip
    """Train one configuration on the training part of each split (one per seed of
    ``tuning_seeds``); the mean of their validation objectives. An iterative model reports its
    per-epoch validation value on the first split, where a poor trial is pruned."""
    import optuna

    params = {p.key: p.suggest(trial) for p in space}
    trial.set_user_attr("params", params)
    child = None
    if parent is not None:
        child = RunTracker(cfg.tracking.uri, cfg.tracking.experiment,
                           f"{cfg.tune.study}-trial{trial.number}", parent_run_id=parent.run_id)
        child.log_params({f"model.{k}": v for k, v in params.items()}
                         | {"trial": trial.number, "seeds": list(splits)})  # fmt: skip

    def report(epoch: int, record: dict[str, float]) -> None:
        if "val" not in record:
            return
        trial.report(record["val"], epoch)
        if child is not None:
            child.log_metrics({f"epoch/{cfg.objective}": record["val"]}, step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: {record['val']:.4f} below the median")

    try:
        summaries = [_validate(cfg, params, seed, prepared, report if i == 0 else None)
                     for i, (seed, prepared) in enumerate(splits.items())]  # fmt: skip
    except optuna.TrialPruned:
        if child is not None:
            child.set_tags({"trial.state": "PRUNED"})
            child.end()
        raise
    except BaseException as error:
        if child is not None:
            child.fail(failure_reason(error))
        raise
    mean = {k: float(np.mean([s[k] for s in summaries])) for k in summaries[0]}
    trial.set_user_attr("per_seed", [s[cfg.objective] for s in summaries])
    if child is not None:
        child.log_metrics(mean)
        child.set_tags({"trial.state": "COMPLETE"})
        child.end()
    return mean[cfg.objective]


def _validate(cfg: DictConfig, params: dict, seed: int, prepared: SplitData,
              on_epoch) -> dict[str, float]:  # fmt: skip
    """Fit on one split's training part; its validation metrics (``val/ndcg@10``, ...)."""
    seed_everything(seed)
    model = build_model(with_params(cfg.model, params), seed, prepared.data)
    train, validation = prepared.split.train.to_csr(), prepared.split.validation.to_csr()
    try:
        check_fits(model, cfg.model_name, train, cfg.eval_batch_size, cfg.memory_gb)
    except ConfigError as error:  # settings too large for this machine: not a result
        import optuna

        raise optuna.TrialPruned(str(error)) from None
    validate = validation_metric(validation, train, cfg.objective, cfg.eval_batch_size)
    model.fit_validated(train, validate=validate, on_epoch=on_epoch)
    result = evaluate(model, validation, train, list(cfg.ks), batch_size=cfg.eval_batch_size)
    return {f"val/{k}": v for k, v in result.summary.items()} | model.training_summary()


def tuning_seeds(cfg: DictConfig) -> list[int]:
    """The split seeds a trial is validated on: ``tune.seeds``, or by default the run's seed
    and the next two for models without a trainer (cheap, and one validation split is noisy:
    averaged over three, ALS's and EASE's choices track test far better) and the run's seed
    alone for the torch models (three times the cost)."""
    if cfg.tune.seeds is not None:
        return [int(s) for s in cfg.tune.seeds]
    return [cfg.seed] if "trainer" in cfg.model else [cfg.seed, cfg.seed + 1, cfg.seed + 2]


def _finished(study) -> list:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


def _pruned(study) -> list:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))


def _parent_run(cfg: DictConfig, study) -> RunTracker:
    """The study's MLflow run: the one a resumed study started, else a new one."""
    parent_id = study.user_attrs.get("mlflow_run_id")
    tracker = RunTracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.tune.study,
                         run_id=parent_id)  # fmt: skip
    if parent_id is None:
        study.set_user_attr("mlflow_run_id", tracker.run_id)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        tracker.log_params(flatten(resolved) | {"search_space": _space_text(cfg.model_name)})
        tracker.set_tags({"study": cfg.tune.study, "model": cfg.model_name,
                          "protocol": cfg.protocol.name, "seed": cfg.seed}
                         | git_state() | package_versions())  # fmt: skip
    return tracker


def _space_text(model: str) -> str:
    return (SEARCH_DIR / f"{model}.yaml").read_text()


# -- confirmation on more splits -------------------------------------------------------------
def confirm_seeds(cfg: DictConfig) -> list[int]:
    """Split seeds that re-validate a single-split study's best trials (none for a study that
    already averages several splits)."""
    if len(tuning_seeds(cfg)) > 1 or not cfg.tune.confirm_top:
        return []
    if cfg.tune.confirm_seeds is not None:
        return [int(s) for s in cfg.tune.confirm_seeds]
    return [cfg.seed + 1, cfg.seed + 2]


def confirm(cfg: DictConfig, study) -> dict | None:
    """Validate the study's ``tune.confirm_top`` best settings, and its first trial (the
    previous default), again on the splits of ``confirm_seeds``; the best mean over all the
    splits wins. One split's ranking of close trials is noise: measured here, GraphSAGE's
    seed-42 winner stopped at epoch 23 on another split. Stored in the study, so it runs once
    for a given set of finished trials."""
    seeds = confirm_seeds(cfg)
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not seeds or not completed:
        return None
    stored = confirmation(study)
    if stored is not None:
        return stored
    chosen, seen = [], set()
    for trial in [completed[0], *sorted(completed, key=lambda t: -t.value)]:
        key = json.dumps(trial.user_attrs["params"], sort_keys=True)
        if key not in seen and len(chosen) <= cfg.tune.confirm_top:
            seen.add(key)
            chosen.append(trial)
    splits = {seed: load_split(OmegaConf.merge(cfg, {"seed": seed})) for seed in seeds}
    rows = []
    for trial in chosen:
        params = trial.user_attrs["params"]
        values = [trial.value] + [_validate(cfg, params, seed, prepared, None)[cfg.objective]
                                  for seed, prepared in splits.items()]  # fmt: skip
        rows.append({"trial": trial.number, "params": params, "values": values,
                     "mean": float(np.mean(values))})  # fmt: skip
        log.info("trial %d confirmed: %s", trial.number, values)
    best = max(rows, key=lambda row: row["mean"])
    confirmed = {"seeds": [*tuning_seeds(cfg), *seeds], "candidates": rows,
                 "trial": best["trial"], "params": best["params"], "mean": best["mean"],
                 "finished": len(_finished(study))}  # fmt: skip
    study.set_user_attr("confirmed", confirmed)
    return confirmed


def confirmation(study) -> dict | None:
    """What ``confirm`` stored, if it covers the study's finished trials (else it is stale)."""
    stored = study.user_attrs.get("confirmed")
    return stored if stored is not None and stored["finished"] == len(_finished(study)) else None


# -- results ----------------------------------------------------------------------------------
def best_params(study) -> dict:
    """The winner: the confirmed trial's settings if the study was confirmed, else the best
    trial's."""
    confirmed = confirmation(study)
    if confirmed is not None:
        return dict(confirmed["params"])
    return dict(study.best_trial.user_attrs["params"])


def provenance(cfg: DictConfig, study) -> str:
    """The comment that names where a tuned default came from."""
    best, finished = study.best_trial, _finished(study)
    confirmed = confirmation(study)
    text = (f"{PROVENANCE} model={cfg.model_name}` (study {cfg.tune.study}): {len(finished)} "
            f"trials, {len(_pruned(study))} pruned; best {cfg.objective} {best.value:.4f} "
            f"(trial {best.number}) on split seeds {', '.join(map(str, tuning_seeds(cfg)))}")
    if confirmed is not None:
        text += (f"; confirmed on seeds {', '.join(map(str, confirmed['seeds']))}: trial "
                 f"{confirmed['trial']}, mean {confirmed['mean']:.4f}")
    return (f"{text}; {datetime.date.today().isoformat()}. Search space: "
            f"conf/search/{cfg.model_name}.yaml; protocol {cfg.protocol.name}.")


def write_back(model: str, params: dict, note: str, folder: Path = CONF_DIR / "model") -> Path:
    """Set ``params`` in ``conf/model/<model>.yaml``, keeping its other lines and comments; the
    provenance ``note`` replaces an earlier one at the top."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    path = folder / f"{model}.yaml"
    lines = path.read_text().splitlines(keepends=True)
    header = []
    while lines and lines[0].startswith("#"):
        header.append(lines.pop(0))
    described = [line for line in header if not _is_provenance(line, header)]
    yaml = YAML()
    yaml.width = 100
    yaml.indent(mapping=2, sequence=4, offset=2)  # "  - item", as the config files write lists
    body = yaml.load("".join(lines))
    for key, value in params.items():
        node, *parents, leaf = [body, *key.split(".")]
        for name in parents:
            if name not in node:
                node[name] = CommentedMap()
            node = node[name]
        node[leaf] = value.item() if isinstance(value, np.generic) else value
    stream = io.StringIO()
    yaml.dump(body, stream)
    wrapped = _wrap_comment(note)
    atomic_write_text(path, "".join(wrapped + described) + stream.getvalue())
    return path


def _is_provenance(line: str, header: list[str]) -> bool:
    """Lines of an earlier provenance note: its first line and the ones continuing it."""
    start = next((i for i, h in enumerate(header) if h.startswith(PROVENANCE)), None)
    if start is None:
        return False
    end = start + 1
    while end < len(header) and header[end].startswith("#   "):
        end += 1
    return line in header[start:end]


def _wrap_comment(text: str, width: int = 100) -> list[str]:
    words, lines, current = text.removeprefix("# ").split(), [], "#"
    for word in words:
        if len(current) + 1 + len(word) > width:
            lines.append(current + "\n")
            current = "#  "
        current += " " + word
    return [*lines, current + "\n"]


def write_study_report(cfg: DictConfig, study, folder: Path) -> Path:
    """``<study>.md`` with the best settings and every trial, and two figures (PNG): the
    optimisation history and the parameters' importance (fANOVA)."""
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as optuna_plots
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    folder.mkdir(parents=True, exist_ok=True)
    name = cfg.tune.study
    figures = []
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the plots are
    axis = optuna_plots.plot_optimization_history(study, target_name=cfg.objective)
    figures.append(_save(axis.figure, folder / f"{name}-history.png"))
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    importances = {}
    if len(search_space(cfg.model_name)) > 1 and len(completed) > 1:
        evaluator = FanovaImportanceEvaluator(seed=cfg.tune.seed)
        importances = get_param_importances(study, evaluator=evaluator)
        axis = optuna_plots.plot_param_importances(study, evaluator=evaluator,
                                                   target_name=cfg.objective)  # fmt: skip
        figures.append(_save(axis.figure, folder / f"{name}-importance.png"))
    plt.close("all")
    path = folder / f"{name}.md"
    atomic_write_text(path, _study_markdown(cfg, study, importances, figures))
    return path


def _save(figure, path: Path) -> Path:
    figure.set_size_inches(7, 4)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    return path


def _study_markdown(cfg: DictConfig, study, importances: dict, figures: list[Path]) -> str:
    best = study.best_trial
    space = search_space(cfg.model_name)
    rows = ["| trial | state | " + " | ".join(p.key for p in space) + f" | {cfg.objective} |",
            "|" + " --- |" * (len(space) + 3)]  # fmt: skip
    for trial in study.trials:
        params = trial.user_attrs.get("params", {})
        value = "" if trial.value is None else f"{trial.value:.4f}"
        if trial.state.name == "PRUNED" and trial.intermediate_values:
            epoch = max(trial.intermediate_values)
            value = f"(pruned at epoch {epoch}: {trial.intermediate_values[epoch]:.4f})"
        cells = [_cell(params.get(p.key)) for p in space]
        rows.append(f"| {trial.number} | {trial.state.name.lower()} | " + " | ".join(cells)
                    + f" | {value} |")  # fmt: skip
    lines = [
        f"# Study {cfg.tune.study}", "",
        f"`python -m recsys.tune model={cfg.model_name}`: Optuna TPE (seed {cfg.tune.seed}), "
        f"median pruning; {len(_finished(study))} finished trials ({len(_pruned(study))} "
        f"pruned), maximising {cfg.objective} on the validation part of the "
        f"{cfg.protocol.name} protocol, averaged over split seeds "
        f"{', '.join(map(str, tuning_seeds(cfg)))}; test never evaluated. Search space: "
        f"`conf/search/{cfg.model_name}.yaml`.", "",
        f"**Best trial**: {best.number}, {cfg.objective} = {best.value:.4f}, "
        + ", ".join(f"`{k}={_cell(v)}`" for k, v in best.user_attrs["params"].items()), "",
    ]  # fmt: skip
    confirmed = confirmation(study)
    if confirmed is not None:
        lines += [f"**Confirmed** on split seeds {', '.join(map(str, confirmed['seeds']))} (the "
                  f"best trials and the previous default, trial 0, validated again; the best "
                  f"mean wins): trial {confirmed['trial']}, mean {confirmed['mean']:.4f}.", "",
                  "| trial | " + " | ".join(f"seed {s}" for s in confirmed["seeds"])
                  + " | mean |", "|" + " --- |" * (len(confirmed["seeds"]) + 2)]  # fmt: skip
        lines += [f"| {row['trial']} | " + " | ".join(f"{v:.4f}" for v in row["values"])
                  + f" | {row['mean']:.4f} |" for row in confirmed["candidates"]]  # fmt: skip
        lines.append("")
    if importances:
        lines += ["Parameter importance (fANOVA): " + ", ".join(
            f"{k} {v:.2f}" for k, v in importances.items()), ""]  # fmt: skip
    lines += [f"![{p.stem}]({p.name})" for p in figures] + ["", "## Trials", "", *rows, ""]
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def finish(cfg: DictConfig, study) -> str:
    """Write the study report and (``tune.write_back``) the winner; one summary line."""
    report = write_study_report(cfg, study, Path(cfg.tune.report_dir))
    best = study.best_trial
    line = (f"study {cfg.tune.study}: best {cfg.objective} {best.value:.4f} (trial "
            f"{best.number}); winner {best_params(study)}; report {report}")
    if cfg.tune.write_back:
        path = write_back(cfg.model_name, best_params(study), provenance(cfg, study))
        line += f"; written to {path}"
    return line


@hydra.main(config_path="../conf", config_name="tune", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    with exit_on_error(), signals_raise():
        if not isinstance(cfg.model_name, str) or cfg.model_name not in _models_with_space():
            raise ConfigError(f"choose a model with a search space: model="
                              f"{'|'.join(_models_with_space())}")  # fmt: skip
        check_config(cfg)
        check_tune(cfg)
        if cfg.tracking.enabled:
            open_client(cfg.tracking.uri, write=True)
        study = tune(cfg)
        confirm(cfg, study)
        print(finish(cfg, study))
    return study.best_value


def _models_with_space() -> list[str]:
    return sorted(p.stem for p in SEARCH_DIR.glob("*.yaml"))


if __name__ == "__main__":
    cli("tune", main)
