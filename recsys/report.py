"""Tables and figures for a paper from the runs of an MLflow experiment.

    python -m recsys.report [--experiment ml-100k-msr-benchmark] [--filter "tags.model != 'random'"]
                            [--out reports] [--ks 10 5 20] [--alpha 0.05] [--test wilcoxon|ttest]
                            [--readme README.md] [--force]

Writes ``results.md`` and ``results.tex`` (booktabs), ``figures/*.png|pdf`` and ``report.json``
(which experiment and protocol the folder holds):

- every model x metric at the first K of ``--ks`` (the other Ks in a second table) as the mean
  over seeds with a 95% confidence interval (Student's t over the seeds' test means), and each
  model's number of seeds; a model with one seed has no interval (``± n/a``);
- the best model of each column in bold, and a dagger on every row the best model beats
  significantly: a paired test (two-sided Wilcoxon signed-rank, or paired t-test) on per-user
  test values averaged over seeds, Holm-corrected over the rows of the column; only models with
  two or more seeds are tested (a column whose best model has one seed has no dagger);
- figures: metric bars with CIs, metric vs K, training time vs NDCG, popularity bias of the
  recommendations (share by item-popularity decile), catalogue coverage, and a 2-D PCA of the
  best embedding model's item vectors coloured by genre.

The protocol (dataset, rating filter, split) is read from the runs' logged config: runs of
different protocols are refused in one table, and so are runs with a missing or NaN value of a
metric the tables need (named by run id, model and seed). Models appear from the weakest to
the strongest by the main NDCG. A folder holding another experiment's or protocol's report, and a
``--readme`` results section made from another experiment (its first line records which), are
overwritten only with ``--force``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from scipy import stats

from recsys import artifacts
from recsys.artifacts import RunArtifacts
from recsys.cli import ArgumentParser, positive_int, probability
from recsys.config import build
from recsys.data import load_movielens
from recsys.docs import read_readme, replace_section
from recsys.errors import ConfigError, RecsysError, first_line
from recsys.files import atomic_write_text
from recsys.tracking import canonical_metrics, mlflow_key, open_client

log = logging.getLogger(__name__)

MAIN_METRICS = ("precision", "recall", "map", "ndcg", "hit_rate", "mrr")
OTHER_METRICS = ("precision", "recall", "map", "ndcg")
LABELS = {"precision": "Precision", "recall": "Recall", "map": "MAP", "map_r": "MAP÷|R|",
          "ndcg": "NDCG", "hit_rate": "HitRate", "mrr": "MRR", "coverage": "Coverage"}  # fmt: skip
# the logged params that define a protocol: runs that differ in one are not comparable
PROTOCOL_PREFIXES = ("data.", "split.", "protocol.")
NOT_PROTOCOL = ("data.dir", "split.size.")
REPORT_FILE = "report.json"
GENRE_PRIORITY = ("Children's", "Horror", "Sci-Fi", "Documentary", "Romance", "Action",
                  "Comedy", "Drama")  # fmt: skip


@dataclass(frozen=True)
class Runs:
    """The finished runs of an experiment: one row each (model, seed, metrics), their shared
    protocol, and their artifacts (each file downloaded once, on first use)."""

    table: pd.DataFrame
    client: MlflowClient
    experiment: str
    protocol: dict[str, str]
    order_by: str = "ndcg@10"
    _artifacts: dict[str, RunArtifacts] = field(default_factory=dict, repr=False)

    @property
    def models(self) -> list[str]:
        """The models, weakest first by mean ``order_by`` (a test metric, ``ndcg@10``)."""
        means = self.table.groupby("model")[mlflow_key(f"test/{self.order_by}")].mean()
        return sorted(means.index, key=lambda m: (means[m], m))

    def artifacts(self, run_id: str) -> RunArtifacts:
        if run_id not in self._artifacts:
            self._artifacts[run_id] = RunArtifacts(self.client, run_id)
        return self._artifacts[run_id]

    def close(self) -> None:
        for logged in self._artifacts.values():
            logged.close()
        self._artifacts.clear()


def load_runs(client: MlflowClient, experiment: str, filter_string: str = "",
              order_by: str = "ndcg@10") -> Runs:  # fmt: skip
    """The experiment's finished runs (matching ``filter_string``); a repeated model and seed
    counts once, its newest run. ``ConfigError`` if none, if they mix protocols, or if
    ``order_by`` (the test metric models are ordered by) was not logged."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ConfigError(f"no MLflow experiment {experiment!r} in {client.tracking_uri}: run "
                          f"`make benchmark` (or `python -m recsys.train -m experiment=benchmark`)")
    query = "attributes.status = 'FINISHED'" + (f" and {filter_string}" if filter_string else "")
    try:
        runs = client.search_runs([found.experiment_id], filter_string=query, max_results=10_000,
                                  order_by=["attributes.start_time DESC"])  # fmt: skip
    except MlflowException as error:
        if error.error_code != "INVALID_PARAMETER_VALUE" or not filter_string:
            raise
        raise ConfigError(f"--filter {filter_string!r}: {first_line(error, 200)}: give an "
                          f"MLflow filter, e.g. "
                          f"\"tags.model != 'random'\" or \"params.seed = '1'\"") from None
    runs = [r for r in runs if "model" in r.data.tags]  # not a sweep's parent run
    if not runs:
        raise ConfigError(f"no finished runs in {experiment!r} match {query!r}")
    rows = [{"run_id": r.info.run_id, "model": r.data.tags["model"],
             "seed": int(r.data.tags["seed"]),
             "has_embeddings": r.data.tags.get("has_embeddings") == "true",
             "commit": r.data.tags.get("git.commit", "unknown"),
             "parent": r.data.tags.get("mlflow.parentRunId"),
             "protocol": json.dumps(protocol_params(r.data.params), sort_keys=True),
             **canonical_metrics(r.data.metrics)}
            for r in runs]  # fmt: skip
    table = pd.DataFrame(rows)  # newest first (search order), so keep="first" keeps the newest
    repeated = table.duplicated(["model", "seed"], keep="first")
    if repeated.any():
        log.warning("%d older runs of a model and seed already reported are ignored (a repeated "
                    "benchmark); the newest run of each is used", int(repeated.sum()))
    table = table[~repeated].sort_values(["model", "seed"], ignore_index=True)
    if mlflow_key(f"test/{order_by}") not in table:
        raise ConfigError(f"the runs of {experiment!r} logged no test/{order_by}: choose --ks "
                          f"among the cut-offs they were evaluated at")  # fmt: skip
    return Runs(table, client, experiment, _one_protocol(table, experiment), order_by)


def protocol_params(params: dict[str, str]) -> dict[str, str]:
    """The logged params that define the evaluation protocol (data and split settings)."""
    return {k: v for k, v in params.items()
            if k.startswith(PROTOCOL_PREFIXES) and not k.startswith(NOT_PROTOCOL)}  # fmt: skip


def _one_protocol(table: pd.DataFrame, experiment: str) -> dict[str, str]:
    protocols = table["protocol"].value_counts()
    if len(protocols) == 1:
        return json.loads(protocols.index[0])
    decoded = [json.loads(p) for p in protocols.index]
    differing = sorted({k for p in decoded for k in p if len({q.get(k) for q in decoded}) > 1})
    counts = "; ".join(f"{n} runs with " + ", ".join(f"{k}={p.get(k)}" for k in differing)
                       for p, n in zip(decoded, protocols, strict=True))  # fmt: skip
    raise ConfigError(f"the runs of {experiment!r} use {len(protocols)} protocols ({counts}): "
                      f"one protocol per table; pick one with --filter, e.g. \"params.`"
                      f"{differing[0]}` = '{decoded[0].get(differing[0])}'\"")


def report_metrics(ks: list[int]) -> list[str]:
    """The logged metrics a report at cut-offs ``ks`` reads (the first K is the main table's)."""
    main = [f"test/{m}@{ks[0]}" for m in (*MAIN_METRICS, "coverage")]
    return [*main, *(f"test/{m}@{k}" for k in ks[1:] for m in OTHER_METRICS), "time/fit_seconds"]


def check_metrics(runs: Runs, ks: list[int]) -> None:
    """Refuse runs whose metrics the report reads are missing or NaN, naming each run.

    Parameters
    ----------
    runs
        The runs of the report.
    ks
        The report's cut-offs (``report_metrics``).

    Raises
    ------
    ConfigError
        If no run logged a cut-off of ``ks`` (the fix: other ``--ks``), or if some runs lack a
        finite value of a needed metric (a run that evaluated no user logs NaN): one line with
        their run ids, models and seeds, and the fix (delete them or pick other runs).
    """
    names = report_metrics(ks)
    absent = [n for n in names if n.startswith("test/") and mlflow_key(n) not in runs.table]
    if absent:
        raise ConfigError(f"the runs of {runs.experiment!r} logged no {absent[0]}: choose --ks "
                          f"among the cut-offs they were evaluated at")  # fmt: skip
    values = runs.table.reindex(columns=[mlflow_key(n) for n in names]).to_numpy(dtype=float)
    finite = np.isfinite(values)  # (runs, metrics)
    bad = np.flatnonzero(~finite.all(axis=1))
    if len(bad) == 0:
        return
    lacking = [n for n, ok in zip(names, finite[bad].all(axis=0), strict=True) if not ok]
    rows = runs.table.iloc[bad]
    listed = [f"{r.run_id} ({r.model}, seed {r.seed})" for r in rows.head(5).itertuples()]
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    raise ConfigError(f"{len(rows)} finished run(s) of {runs.experiment!r} have NaN or no "
                      f"{', '.join(lacking[:3])}{' ...' if len(lacking) > 3 else ''}: "
                      f"{'; '.join(listed)}{more}; delete them (`mlflow runs delete --run-id "
                      f"ID`) or pick other runs with --experiment or --filter")  # fmt: skip


def describe_protocol(runs: Runs) -> str:
    """The runs' protocol in words, from the first run's logged config."""
    cfg = runs.artifacts(runs.table["run_id"].iloc[0]).config()
    splitter = build(cfg.split, "split")
    positives = ("all ratings positive" if cfg.data.min_rating is None
                 else f"ratings >= {cfg.data.min_rating} positive")  # fmt: skip
    refit = cfg.get("protocol", {}).get("refit", False)
    training = ("settings and epochs chosen on validation, then refit on train + validation"
                if refit else "models trained on the training part")  # fmt: skip
    return (f"{cfg.data.name}, {positives}; {splitter.describe()}; {training}; full-catalogue "
            f"ranking with the user's training and validation items excluded from test")


def confidence_interval(values: np.ndarray, level: float = 0.95) -> float:
    """Half-width of the Student-t confidence interval of the mean (``nan`` for one value)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan")
    sem = values.std(ddof=1) / np.sqrt(len(values))
    return float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * sem)


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); a NaN p-value (a
    test without enough values) counts as 1."""
    p_values = {name: 1.0 if np.isnan(p) else p for name, p in p_values.items()}
    ordered = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for rank, name in enumerate(ordered):
        running = max(running, (len(ordered) - rank) * p_values[name])
        adjusted[name] = min(1.0, running)
    return adjusted


def paired_p_value(best: np.ndarray, other: np.ndarray, test: str) -> float:
    """Two-sided p-value that the paired per-user values differ."""
    difference = best - other
    if np.allclose(difference, 0.0):
        return 1.0
    if test == "wilcoxon":
        return float(stats.wilcoxon(best, other, zero_method="wilcox").pvalue)
    return float(stats.ttest_rel(best, other).pvalue)


def significance(per_user: pd.DataFrame, best: str, alpha: float, test: str) -> dict[str, bool]:
    """For every other model (column): is ``best`` significantly better (Holm, ``alpha``)?"""
    others = [m for m in per_user.columns if m != best]
    p_values = {m: paired_p_value(per_user[best].to_numpy(), per_user[m].to_numpy(), test)
                for m in others}  # fmt: skip
    adjusted = holm(p_values)
    better = per_user[best].mean() > per_user[others].mean()
    return {m: bool(adjusted[m] < alpha and better[m]) for m in others}


def per_user_values(runs: Runs, metric: str, models: list[str] | None = None) -> pd.DataFrame:
    """``(users, models)`` per-user test values of ``metric``, averaged over each model's seeds
    (each run's per-user file is read once, whatever the number of metrics); all models, or
    those of ``models``."""
    columns = {}
    for model, group in runs.table.groupby("model"):
        if models is not None and model not in models:
            continue
        frames = [runs.artifacts(run_id).per_user("test")[metric] for run_id in group["run_id"]]
        columns[model] = pd.concat(frames, axis=1).mean(axis=1)
    table = pd.DataFrame(columns).dropna()
    return table[[m for m in runs.models if m in table]]


@dataclass(frozen=True)
class Cell:
    mean: float
    half_width: float  # nan for one seed
    seeds: int
    bold: bool = False
    dagger: bool = False


def seed_counts(runs: Runs) -> pd.Series:
    """The number of seeds (runs) of each model, in ``runs.models`` order."""
    return runs.table.groupby("model")["seed"].nunique()[runs.models]


def metric_table(runs: Runs, names: list[str], alpha: float, test: str,
                 per_user_tests: bool = True) -> dict[str, dict[str, Cell]]:  # fmt: skip
    """``{column: {model: Cell}}`` for test metrics ``names`` (``ndcg@10``, ...).

    Only models with two or more seeds take part in the paired tests (daggers); a column whose
    best model has one seed has none.
    """
    table = {}
    n_seeds = seed_counts(runs)
    tested = [m for m in runs.models if n_seeds[m] >= 2]
    testable = per_user_tests and len(tested) > 1
    for name in names:
        key = mlflow_key(f"test/{name}")
        grouped = runs.table.groupby("model")[key]
        means = grouped.mean()
        best = means.idxmax()
        marks = {}
        if testable and best in tested and not name.startswith("coverage"):
            marks = significance(per_user_values(runs, name, tested), best, alpha, test)
        table[name] = {m: Cell(means[m], confidence_interval(grouped.get_group(m)), n_seeds[m],
                               bold=m == best, dagger=marks.get(m, False))
                       for m in runs.models}  # fmt: skip
    return table


def format_cell(cell: Cell, latex: bool = False) -> str:
    """``mean ± half-width`` (``n/a`` for one seed), bold and † as the cell says."""
    plus_minus = "$\\pm$" if latex else "±"
    ci = "n/a" if cell.seeds < 2 else f"{cell.half_width:.4f}"
    text = f"{cell.mean:.4f} {plus_minus} {ci}"
    if cell.bold:
        text = f"\\textbf{{{text}}}" if latex else f"**{text}**"
    if cell.dagger:
        text += "$^\\dagger$" if latex else " †"
    return text


def _header(name: str) -> str:
    metric, _, k = name.partition("@")
    return f"{LABELS[metric]}@{k}"


def markdown_table(table: dict[str, dict[str, Cell]], models: list[str],
                   extra: dict[str, dict[str, str]] | None = None) -> str:  # fmt: skip
    """The table as markdown: a row per model with its number of seeds, then the metrics."""
    extra = extra or {}
    headers = ["model", "Seeds", *map(_header, table), *extra]
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    first = next(iter(table.values()))
    for model in models:
        cells = [str(first[model].seeds), *(format_cell(table[c][model]) for c in table)]
        cells += [extra[c][model] for c in extra]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latex_table(table: dict[str, dict[str, Cell]], models: list[str], caption: str,
                extra: dict[str, dict[str, str]] | None = None) -> str:  # fmt: skip
    """The table as a LaTeX (booktabs) table, with the number of seeds of each model."""
    extra = extra or {}
    headers = ["Model", "Seeds", *map(_header, table), *extra]
    lines = ["\\begin{table}[t]", "\\centering", "\\small",
             f"\\begin{{tabular}}{{l{'r' * (len(headers) - 1)}}}", "\\toprule",
             " & ".join(headers) + " \\\\", "\\midrule"]  # fmt: skip
    first = next(iter(table.values()))
    for model in models:
        cells = [str(first[model].seeds),
                 *(format_cell(table[c][model], latex=True) for c in table)]  # fmt: skip
        cells += [extra[c][model] for c in extra]
        lines.append(model.replace("_", "\\_") + " & " + " & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}", "\\end{table}"]
    return "\n".join(lines)


def write_report(runs: Runs, out: Path, ks: list[int], alpha: float, test: str,
                 force: bool = False) -> Path:  # fmt: skip
    """Write ``results.md``, ``results.tex``, the figures and ``report.json`` into ``out``;
    return the markdown path. The first of ``ks`` is the main cut-off.

    Runs lacking a needed metric are refused (``check_metrics``); so is a folder that holds
    another experiment's or protocol's report, or files no report wrote, unless ``force``.
    """
    check_metrics(runs, ks)
    check_output_folder(out, runs, force)
    main_k, other_ks = ks[0], list(ks[1:])
    models = runs.models
    main = main_table(runs, main_k, alpha, test)
    note = table_note(runs, alpha, test)
    sections = [f"# Results: {runs.experiment}", "", summary(runs), "",
                f"## Test metrics at K = {main_k}", "",
                markdown_table(main.cells, models, main.extra), "", note, ""]  # fmt: skip
    latex = ["% generated by python -m recsys.report; needs \\usepackage{booktabs}",
             latex_table(main.cells, models, f"Test metrics at $K={main_k}$. "
                         + _latex_escape(note), main.extra)]  # fmt: skip
    if other_ks:
        other = metric_table(runs, [f"{m}@{k}" for k in other_ks for m in OTHER_METRICS], alpha,
                             test)  # fmt: skip
        sections += [f"## Test metrics at K = {', '.join(map(str, other_ks))}", "",
                     markdown_table(other, models), "", note, ""]  # fmt: skip
        latex.append(latex_table(other, models, "Test metrics at other cut-offs. "
                                 + _latex_escape(note)))  # fmt: skip
    figures = write_figures(runs, out / "figures", main_k)
    sections += ["## Figures", "", *[f"![{name}](figures/{name}.png)" for name in figures], ""]
    atomic_write_text(out / "results.tex", "\n\n".join(latex) + "\n")
    atomic_write_text(out / "results.md", "\n".join(sections))
    atomic_write_text(out / REPORT_FILE, json.dumps(report_record(runs), indent=2) + "\n")
    return out / "results.md"


@dataclass(frozen=True)
class MainTable:
    cells: dict[str, dict[str, Cell]]
    extra: dict[str, dict[str, str]]  # columns that are no metric: fit time, epochs


def main_table(runs: Runs, k: int, alpha: float, test: str) -> MainTable:
    """Every metric at the main cut-off ``k``, plus fit time and (torch models) epochs."""
    cells = metric_table(runs, [f"{m}@{k}" for m in MAIN_METRICS], alpha, test)
    cells |= metric_table(runs, [f"coverage@{k}"], alpha, test, per_user_tests=False)
    grouped = runs.table.groupby("model")
    extra = {"Fit (s)": {m: f"{seconds:.1f}" for m, seconds in fit_seconds(runs).items()}}
    if "train/best_epoch" in runs.table:
        best, run = grouped["train/best_epoch"].mean(), grouped["train/epochs_run"].mean()
        extra["Epochs (best / run)"] = {m: "" if np.isnan(best[m]) else f"{best[m]:.0f} / "
                                        f"{run[m]:.0f}" for m in runs.models}  # fmt: skip
    return MainTable(cells, extra)


def summary(runs: Runs) -> str:
    """Which runs, which protocol, which code."""
    commits = sorted(runs.table["commit"].unique())
    n_seeds = runs.table.groupby("model")["seed"].nunique()
    seeds = (f"{n_seeds.iloc[0]} seeds" if n_seeds.nunique() == 1
             else f"{n_seeds.min()}–{n_seeds.max()} seeds")  # fmt: skip
    return (f"{len(runs.table)} runs: {len(n_seeds)} models × {seeds}. Protocol: "
            f"{describe_protocol(runs)}. Generated by `python -m recsys.report --experiment "
            f"{runs.experiment}` from runs at commit(s) {', '.join(c[:10] for c in commits)}.")


def table_note(runs: Runs, alpha: float, test: str) -> str:
    """What the cells, bold and daggers mean; the seeds behind each mean and their degrees of
    freedom, per model where the models' seeds differ."""
    test_name = ("two-sided Wilcoxon signed-rank test" if test == "wilcoxon"
                 else "two-sided paired t-test")  # fmt: skip
    return (f"{seeds_note(runs)} Bold: best mean per column. {dagger_note(runs, test_name, alpha)}"
            f" Coverage is one number per run, so it has no per-user test. Fit (s): mean wall "
            f"time of training on the machine that ran the benchmark (the one column that a "
            f"rerun does not reproduce exactly).")  # fmt: skip


def seeds_note(runs: Runs) -> str:
    """The seeds behind each mean and the confidence intervals' degrees of freedom: one
    statement if every model has the same two or more seeds, else one per group of models
    with the same seeds (one seed: no interval)."""
    seeds = runs.table.groupby("model")["seed"].apply(lambda s: tuple(sorted(s)))
    groups: dict[tuple[int, ...], list[str]] = {}
    for model in runs.models:
        groups.setdefault(seeds[model], []).append(model)
    interval = "half-width of the 95% confidence interval (Student's t)"
    if len(groups) == 1 and len(seeds.iloc[0]) >= 2:
        return f"Mean over {_seeds_and_freedom(seeds.iloc[0])} ± {interval}."
    parts = [f"{', '.join(models)}: {_seeds_and_freedom(group)}"
             for group, models in groups.items()]  # fmt: skip
    return f"Mean over each model's seeds ({'; '.join(parts)}) ± {interval}."


def _seeds_and_freedom(seeds: tuple[int, ...]) -> str:
    if len(seeds) < 2:
        return f"seed {seeds[0]} only, so no interval (± n/a) and no significance test"
    freedom = len(seeds) - 1
    return (f"seeds {', '.join(map(str, seeds))} ({freedom} degree"
            f"{'' if freedom == 1 else 's'} of freedom)")  # fmt: skip


def dagger_note(runs: Runs, test_name: str, alpha: float) -> str:
    """What a dagger means, and which models are not tested (one seed)."""
    n_seeds = seed_counts(runs)
    untested = [m for m in runs.models if n_seeds[m] < 2]
    if len(runs.models) - len(untested) < 2:
        return "No significance tests (†): fewer than two models have two or more seeds."
    text = (f"†: the best model is significantly better than this row ({test_name} on per-user "
            f"test values averaged over seeds, Holm-corrected over the rows of each column, "
            f"α = {alpha}).")  # fmt: skip
    if untested:
        text += (f" Models with one seed ({', '.join(untested)}) are not tested, and a column "
                 f"whose best model has one seed has no †.")  # fmt: skip
    return text


def readme_section(runs: Runs, k: int, alpha: float, test: str) -> str:
    """The main table and its note, for the README's generated ``results`` section."""
    check_metrics(runs, [k])
    main = main_table(runs, k, alpha, test)
    return "\n\n".join([summary(runs), markdown_table(main.cells, runs.models, main.extra),
                         table_note(runs, alpha, test)])  # fmt: skip


def report_record(runs: Runs) -> dict:
    """``report.json``: what the folder's report was built from (no timestamps, so the same
    runs rebuild the same file), and each model's mean fit seconds (what
    ``experiments/benchmark_models.py`` schedules the longest first by)."""
    return {"experiment": runs.experiment, "protocol": runs.protocol,
            "runs": sorted(runs.table["run_id"]), "models": runs.models,
            "fit_seconds": {m: round(s, 1) for m, s in fit_seconds(runs).items()}}  # fmt: skip


def fit_seconds(runs: Runs) -> dict[str, float]:
    """Each model's mean ``time/fit_seconds`` over its runs, in ``runs.models`` order."""
    means = runs.table.groupby("model")["time/fit_seconds"].mean()
    return {m: float(means[m]) for m in runs.models}


def check_output_folder(out: Path, runs: Runs, force: bool) -> None:
    """Refuse to write into a folder holding another report (or other files) unless ``force``."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: choose another --out")
    if force or not out.exists() or not any(out.iterdir()):
        return
    try:
        previous = json.loads((out / REPORT_FILE).read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{out} holds files that no report wrote ({REPORT_FILE} missing or "
                          f"unreadable): pass --force to write into it anyway, or choose "
                          f"another --out") from None  # fmt: skip
    if previous.get("experiment") != runs.experiment:
        raise ConfigError(f"{out} holds the report of experiment "
                          f"{previous.get('experiment')!r}, not {runs.experiment!r}: pass "
                          f"--force to overwrite it, or choose another --out")  # fmt: skip
    if previous.get("protocol") != runs.protocol:
        old = previous.get("protocol") or {}
        differing = sorted(k for k in set(old) | set(runs.protocol)
                           if old.get(k) != runs.protocol.get(k))  # fmt: skip
        changes = ", ".join(f"{k} {old.get(k)} -> {runs.protocol.get(k)}" for k in differing)
        raise ConfigError(f"{out} holds a report of another protocol ({changes}): pass --force "
                          f"to overwrite it, or choose another --out")  # fmt: skip


def _latex_escape(text: str) -> str:
    return (text.replace("%", "\\%").replace("±", "$\\pm$").replace("†", "$^\\dagger$")
            .replace("α", "$\\alpha$"))  # fmt: skip


# -- figures --------------------------------------------------------------------------------
def figure(runs: Runs, name: str, k: int = 10):
    """One of the report's figures at cut-off ``k`` (a matplotlib Figure, or ``None`` if it
    does not apply): ``metric_bars``, ``metric_vs_k``, ``time_vs_ndcg``, ``popularity_bias``,
    ``coverage``, ``item_embeddings``."""
    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    return FIGURES[name](runs, k)


def write_figures(runs: Runs, folder: Path, k: int) -> list[str]:
    """Draw every figure as PNG and PDF into ``folder``; return their names."""
    folder.mkdir(parents=True, exist_ok=True)
    drawn = []
    for name in FIGURES:
        figure_ = figure(runs, name, k)
        if figure_ is None:
            continue
        figure_.savefig(folder / f"{name}.png", dpi=200, bbox_inches="tight")
        figure_.savefig(folder / f"{name}.pdf", bbox_inches="tight",
                        metadata={"CreationDate": None})  # fmt: skip
        plt.close(figure_)
        drawn.append(name)
    return drawn


def log_to_sweep(runs: Runs, out: Path) -> str | None:
    """Attach the report (tables and figures) to the parent run of the sweep that holds most
    of its runs (a benchmark, with perhaps a model added by a later sweep), so MLflow shows the
    benchmark and its figures in one place; runs from no sweep attach nothing. A store that
    refuses is a warning: the files on disk are the report. Returns the parent's id."""
    parents = runs.table["parent"][runs.table["parent"].map(lambda p: isinstance(p, str))]
    if parents.empty:
        return None
    parent = parents.value_counts().index[0]  # ties: the first in the table's order
    try:
        runs.client.log_artifacts(parent, str(out / "figures"), "report/figures")
        for name in ("results.md", "results.tex"):
            runs.client.log_artifact(parent, str(out / name), "report")
    except Exception as error:  # noqa: BLE001 - MLflow raises many types; the report stands
        log.warning("could not attach the report to sweep run %s: %s", parent, error)
        return None
    return parent


def _summary(runs: Runs, key: str) -> tuple[np.ndarray, np.ndarray]:
    grouped = runs.table.groupby("model")[key]
    means = grouped.mean()
    return (np.array([means[m] for m in runs.models]),
            np.array([confidence_interval(grouped.get_group(m)) for m in runs.models]))


def _rotate_labels(axis) -> None:
    axis.tick_params(axis="x", rotation=45)
    for label in axis.get_xticklabels():
        label.set_horizontalalignment("right")


def _metric_bars(runs: Runs, k: int):
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for axis, metric in zip(axes, ("ndcg", "recall"), strict=True):
        means, errors = _summary(runs, mlflow_key(f"test/{metric}@{k}"))
        axis.bar(runs.models, means, yerr=np.nan_to_num(errors), capsize=3, color="#4C72B0")
        axis.set_ylabel(f"test {LABELS[metric]}@{k} (fraction, 0–1)")
        axis.set_xlabel("model")
        _rotate_labels(axis)
    figure.suptitle(f"Test metrics at K = {k}: mean over seeds, 95% confidence interval")
    figure.tight_layout()
    return figure


def _metric_vs_k(runs: Runs, k: int):
    ks = sorted({int(c.rsplit("_at_", 1)[1]) for c in runs.table.columns
                 if c.startswith("test/ndcg_at_")})  # fmt: skip
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
    for axis, metric in zip(axes, ("ndcg", "recall"), strict=True):
        for model in runs.models:
            rows = runs.table[runs.table["model"] == model]
            axis.plot(ks, [rows[mlflow_key(f"test/{metric}@{c}")].mean() for c in ks],
                      marker="o", label=model)  # fmt: skip
        axis.set_xlabel("cut-off K (number of recommended items)")
        axis.set_ylabel(f"test {LABELS[metric]}@K (fraction, 0–1)")
        axis.set_xticks(ks)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    figure.suptitle("Test metrics against the cut-off K (mean over seeds)")
    figure.tight_layout()
    return figure


def _time_vs_ndcg(runs: Runs, k: int):
    seconds, _ = _summary(runs, "time/fit_seconds")
    ndcg, errors = _summary(runs, mlflow_key(f"test/ndcg@{k}"))
    figure, axis = plt.subplots(figsize=(7, 4))
    markers = "osD^vP*X"
    for i, model in enumerate(runs.models):  # one colour and marker per model, in a legend
        axis.errorbar(max(seconds[i], 1e-3), ndcg[i], yerr=np.nan_to_num(errors[i]), capsize=3,
                      fmt=markers[i % len(markers)], markersize=7, label=model)  # fmt: skip
    axis.set_xscale("log")
    axis.margins(x=0.12, y=0.1)
    axis.set_xlabel("training time (seconds, log scale; < 1 ms drawn at 1 ms)")
    axis.set_ylabel(f"test NDCG@{k} (fraction, 0–1)")
    axis.set_title("Training time against accuracy (mean over seeds, 95% CI)")
    axis.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    figure.tight_layout()
    return figure


def _popularity_bias(runs: Runs, k: int):
    shares = {}
    for model, group in runs.table.groupby("model"):
        per_seed = []
        for run_id in group["run_id"]:
            logged = runs.artifacts(run_id)
            top = logged.array(artifacts.TEST_TOP_ITEMS)[:, :k]
            counts = logged.array(artifacts.TRAIN_ITEM_COUNTS)
            rank = np.empty(len(counts), dtype=np.int64)
            rank[np.argsort(counts, kind="stable")] = np.arange(len(counts))
            decile = rank * 10 // len(counts)  # 0 = least popular tenth, 9 = most popular
            shown = top[top >= 0]
            per_seed.append(np.bincount(decile[shown], minlength=10) / max(len(shown), 1))
        shares[model] = np.mean(per_seed, axis=0)
    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(runs.models)
    for position, model in enumerate(runs.models):
        axis.bar(np.arange(1, 11) + (position - len(runs.models) / 2 + 0.5) * width,
                 100 * shares[model], width=width, label=model)  # fmt: skip
    axis.axhline(10, color="black", linestyle="--", linewidth=0.8, label="uniform (10%)")
    axis.set_xticks(range(1, 11))
    axis.set_xlabel("item-popularity decile (1 = least, 10 = most training interactions)")
    axis.set_ylabel("share of recommended items (%)")
    axis.set_title(f"Popularity bias of the top-{k} recommendations (mean over seeds)")
    axis.legend(loc="upper left", ncol=2, frameon=False, fontsize=8)
    figure.tight_layout()
    return figure


def _coverage(runs: Runs, k: int):
    means, errors = _summary(runs, mlflow_key(f"test/coverage@{k}"))
    figure, axis = plt.subplots(figsize=(6, 3.6))
    axis.bar(runs.models, 100 * means, yerr=100 * np.nan_to_num(errors), capsize=3,
             color="#55A868")  # fmt: skip
    axis.set_ylabel(f"catalogue coverage@{k} (% of items)")
    axis.set_xlabel("model")
    axis.set_title(f"Share of the catalogue in at least one user's top {k}")
    _rotate_labels(axis)
    figure.tight_layout()
    return figure


def _item_embeddings(runs: Runs, k: int):
    with_vectors = runs.table[runs.table["has_embeddings"]]
    if with_vectors.empty:
        return None
    best_model = with_vectors.groupby("model")[mlflow_key(f"test/ndcg@{k}")].mean().idxmax()
    chosen = with_vectors[with_vectors["model"] == best_model].sort_values("seed")
    logged = runs.artifacts(chosen["run_id"].iloc[0])
    vectors = logged.array(artifacts.embedding_path("item_embeddings"))
    item_ids = logged.array(artifacts.embedding_path("item_ids"))
    cfg = logged.config()
    items = load_movielens(cfg.data.dir, cfg.data.name).items.set_index("item_id").loc[item_ids]
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T  # (n_items, 2) PCA
    genre = [next((g for g in GENRE_PRIORITY if g in row), "other") for row in items["genres"]]
    genre = np.array(genre)
    figure, axis = plt.subplots(figsize=(7, 5))
    axis.scatter(*points[genre == "other"].T, s=5, color="lightgrey", label="other")
    for name in GENRE_PRIORITY:
        axis.scatter(*points[genre == name].T, s=7, label=name, alpha=0.8)
    axis.set_xlabel("first principal component (embedding units)")
    axis.set_ylabel("second principal component (embedding units)")
    axis.set_title(f"Item embeddings of {best_model} (seed {cfg.seed}), PCA, coloured by genre")
    axis.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, markerscale=2,
                title="genre (the first\nof these it has)")  # fmt: skip
    figure.tight_layout()
    return figure


FIGURES = {
    "metric_bars": _metric_bars,
    "metric_vs_k": _metric_vs_k,
    "time_vs_ndcg": _time_vs_ndcg,
    "popularity_bias": _popularity_bias,
    "coverage": _coverage,
    "item_embeddings": _item_embeddings,
}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m recsys.report", description=__doc__)
    parser.add_argument("--experiment", default="ml-100k-msr-benchmark")
    parser.add_argument("--filter", default="",
                        help="MLflow filter, e.g. \"tags.model != 'random'\"")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--out", default="reports")
    parser.add_argument("--ks", type=positive_int, nargs="+", default=[10, 5, 20],
                        help="cut-offs; the first is the main table's (default: 10 5 20)")
    parser.add_argument("--alpha", type=probability, default=0.05,
                        help="significance level of the paired tests (default 0.05)")
    parser.add_argument("--test", choices=("wilcoxon", "ttest"), default="wilcoxon")
    parser.add_argument("--readme", type=Path, default=None,
                        help="also write the main table into this README's results section")
    parser.add_argument("--force", action="store_true",
                        help="overwrite a folder holding another experiment's or protocol's "
                             "report, and a --readme section of another experiment")

    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    plt.switch_backend("Agg")  # a CLI: files only (importing this module leaves notebooks alone)
    runs = None
    try:
        readme = None if args.readme is None else read_readme(
            args.readme, "results", experiment=args.experiment, force=args.force)
        client = open_client(args.tracking_uri, option="--tracking-uri")
        runs = load_runs(client, args.experiment, args.filter, order_by=f"ndcg@{args.ks[0]}")
        path = write_report(runs, Path(args.out), args.ks, args.alpha, args.test, args.force)
        if not args.filter:  # a report of some of a sweep's runs is no report of the sweep
            log_to_sweep(runs, Path(args.out))
        if readme is not None:
            section = readme_section(runs, args.ks[0], args.alpha, args.test)
            atomic_write_text(args.readme, replace_section(readme, "results", section,
                                                           experiment=runs.experiment))
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if runs is not None:
            runs.close()
    print(f"wrote {path}, {path.with_suffix('.tex')} and figures/ from {len(runs.table)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
