"""Tables and figures for a paper from the runs of an MLflow experiment.

    python -m recsys.report [--experiment ml-100k-benchmark] [--filter "tags.model != 'random'"]
                            [--out reports] [--alpha 0.05] [--test wilcoxon|ttest]

Writes ``results.md`` and ``results.tex`` (booktabs) and ``figures/*.png|pdf``:

- every model x metric at K=10 (and the other Ks in a second table) as the mean over seeds
  with a 95% confidence interval (Student's t over the seeds' test means);
- the best model of each column in bold, and a dagger on every row the best model beats
  significantly: a paired test (two-sided Wilcoxon signed-rank, or paired t-test) on per-user
  test values averaged over seeds, Holm-corrected over the rows of the column;
- figures: metric bars with CIs, metric vs K, training time vs NDCG@10, popularity bias of the
  recommendations (share by item-popularity decile), catalogue coverage, and a 2-D PCA of the
  best embedding model's item vectors coloured by genre.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from scipy import stats  # noqa: E402

from recsys.data import load_movielens  # noqa: E402
from recsys.errors import ConfigError, RecsysError  # noqa: E402
from recsys.files import atomic_write_text  # noqa: E402
from recsys.tracking import mlflow_key  # noqa: E402

log = logging.getLogger(__name__)

MAIN_METRICS = ("precision", "recall", "map", "ndcg", "hit_rate", "mrr")
OTHER_METRICS = ("precision", "recall", "map", "ndcg")
LABELS = {"precision": "Precision", "recall": "Recall", "map": "MAP", "ndcg": "NDCG",
          "hit_rate": "HitRate", "mrr": "MRR", "coverage": "Coverage"}  # fmt: skip
MODEL_ORDER = ("random", "popular", "itemknn", "ease", "als", "bpr", "two_tower", "graphsage")
GENRE_PRIORITY = ("Children's", "Horror", "Sci-Fi", "Documentary", "Romance", "Action",
                  "Comedy", "Drama")  # fmt: skip


@dataclass(frozen=True)
class Runs:
    """The finished runs of an experiment: one row each (model, seed, metrics, artifacts)."""

    table: pd.DataFrame
    client: MlflowClient
    experiment: str

    @property
    def models(self) -> list[str]:
        found = self.table["model"].unique().tolist()
        return sorted(found, key=lambda m: (MODEL_ORDER + (m,)).index(m))


def load_runs(client: MlflowClient, experiment: str, filter_string: str = "") -> Runs:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ConfigError(f"no MLflow experiment {experiment!r} in {client.tracking_uri}: run "
                          f"`make benchmark` (or `python -m recsys.train -m experiment=benchmark`)")
    query = "attributes.status = 'FINISHED'" + (f" and {filter_string}" if filter_string else "")
    runs = client.search_runs([found.experiment_id], filter_string=query, max_results=10_000,
                              order_by=["attributes.start_time DESC"])  # fmt: skip
    if not runs:
        raise ConfigError(f"no finished runs in {experiment!r} match {query!r}")
    rows = [{"run_id": r.info.run_id, "model": r.data.tags["model"],
             "seed": int(r.data.tags["seed"]),
             "has_embeddings": r.data.tags.get("has_embeddings") == "true",
             "commit": r.data.tags.get("git.commit", "unknown"), **r.data.metrics}
            for r in runs]  # fmt: skip
    table = pd.DataFrame(rows)  # newest first (search order), so keep="first" keeps the newest
    repeated = table.duplicated(["model", "seed"], keep="first")
    if repeated.any():
        log.warning("%d older runs of a model and seed already reported are ignored (a repeated "
                    "benchmark); the newest run of each is used", int(repeated.sum()))
    table = table[~repeated].sort_values(["model", "seed"], ignore_index=True)
    return Runs(table, client, experiment)


def confidence_interval(values: np.ndarray, level: float = 0.95) -> float:
    """Half-width of the Student-t confidence interval of the mean (``nan`` for one value)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan")
    sem = values.std(ddof=1) / np.sqrt(len(values))
    return float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * sem)


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
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


def per_user_values(runs: Runs, metric: str) -> pd.DataFrame:
    """``(users, models)`` per-user test values of ``metric``, averaged over each model's seeds."""
    columns = {}
    with tempfile.TemporaryDirectory() as folder:
        for model, group in runs.table.groupby("model"):
            frames = []
            for run_id in group["run_id"]:
                path = runs.client.download_artifacts(run_id, "metrics/test_per_user.csv",
                                                      f"{folder}/{run_id}")  # fmt: skip
                frames.append(pd.read_csv(path, index_col="user_id")[metric])
            columns[model] = pd.concat(frames, axis=1).mean(axis=1)
    table = pd.DataFrame(columns).dropna()
    return table[[m for m in runs.models if m in table]]


@dataclass(frozen=True)
class Cell:
    mean: float
    half_width: float
    bold: bool = False
    dagger: bool = False


def metric_table(runs: Runs, names: list[str], alpha: float, test: str,
                 per_user_tests: bool = True) -> dict[str, dict[str, Cell]]:  # fmt: skip
    """``{column: {model: Cell}}`` for test metrics ``names`` (``ndcg@10``, ...)."""
    table = {}
    for name in names:
        key = mlflow_key(f"test/{name}")
        grouped = runs.table.groupby("model")[key]
        means = grouped.mean()
        best = means.idxmax()
        marks = {}
        if per_user_tests and not name.startswith("coverage"):
            marks = significance(per_user_values(runs, name), best, alpha, test)
        table[name] = {m: Cell(means[m], confidence_interval(grouped.get_group(m)),
                               bold=m == best, dagger=marks.get(m, False))
                       for m in runs.models}  # fmt: skip
    return table


def _fmt(cell: Cell, latex: bool) -> str:
    ci = "" if np.isnan(cell.half_width) else (f" $\\pm$ {cell.half_width:.4f}" if latex
                                               else f" ± {cell.half_width:.4f}")  # fmt: skip
    text = f"{cell.mean:.4f}{ci}"
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
    extra = extra or {}
    headers = ["model", *map(_header, table), *extra]
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    for model in models:
        cells = [_fmt(table[c][model], latex=False) for c in table]
        cells += [extra[c][model] for c in extra]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latex_table(table: dict[str, dict[str, Cell]], models: list[str], caption: str,
                extra: dict[str, dict[str, str]] | None = None) -> str:  # fmt: skip
    extra = extra or {}
    headers = ["Model", *map(_header, table), *extra]
    lines = ["\\begin{table}[t]", "\\centering", "\\small",
             f"\\begin{{tabular}}{{l{'r' * (len(headers) - 1)}}}", "\\toprule",
             " & ".join(headers) + " \\\\", "\\midrule"]  # fmt: skip
    for model in models:
        cells = [_fmt(table[c][model], latex=True) for c in table]
        cells += [extra[c][model] for c in extra]
        lines.append(model.replace("_", "\\_") + " & " + " & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}", "\\end{table}"]
    return "\n".join(lines)


def write_report(runs: Runs, out: Path, ks: list[int], alpha: float, test: str) -> Path:
    """Write ``results.md``, ``results.tex`` and the figures; return the markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    main_k, other_ks = 10, [k for k in ks if k != 10]
    models = runs.models
    main = metric_table(runs, [f"{m}@{main_k}" for m in MAIN_METRICS], alpha, test)
    main |= metric_table(runs, [f"coverage@{main_k}"], alpha, test, per_user_tests=False)
    seconds = runs.table.groupby("model")["time/fit_seconds"]
    fit = {"Fit (s)": {m: f"{seconds.mean()[m]:.1f}" for m in models}}
    other = metric_table(runs, [f"{m}@{k}" for k in other_ks for m in OTHER_METRICS], alpha, test)
    seeds = sorted(runs.table["seed"].unique().tolist())
    test_name = ("two-sided Wilcoxon signed-rank test" if test == "wilcoxon"
                 else "two-sided paired t-test")  # fmt: skip
    note = (f"Mean over seeds {seeds} ± half-width of the 95% confidence interval (Student's t, "
            f"{len(seeds) - 1} degrees of freedom). Bold: best mean per column. †: the best "
            f"model is significantly better than this row ({test_name} on per-user test values "
            f"averaged over seeds, Holm-corrected over the rows of each column, α = {alpha}). "
            f"Coverage is one number per run, so it has no per-user test. Fit (s): mean wall "
            f"time of training on the machine that ran the benchmark (the one column that a "
            f"rerun does not reproduce exactly).")
    commits = sorted(runs.table["commit"].unique())
    markdown = [
        f"# Results: {runs.experiment}",
        "",
        f"{len(runs.table)} runs: {len(models)} models × {len(seeds)} seeds; default protocol "
        "(ML-100K, 75/25 per-user random split with 10% of the training part for validation, "
        "all ratings positive, full-catalogue ranking with seen items excluded). Generated by "
        f"`python -m recsys.report --experiment {runs.experiment}` from runs at commit(s) "
        f"{', '.join(c[:10] for c in commits)}.",
        "",
        f"## Test metrics at K = {main_k}",
        "",
        markdown_table(main, models, fit),
        "",
        note,
        "",
        f"## Test metrics at K = {', '.join(map(str, other_ks))}",
        "",
        markdown_table(other, models),
        "",
        note,
        "",
        "## Figures",
        "",
        *[f"![{name}](figures/{name}.png)" for name in write_figures(runs, out / "figures")],
        "",
    ]
    caption_main = f"Test metrics at $K={main_k}$. " + _latex_escape(note)
    caption_other = "Test metrics at other cut-offs. " + _latex_escape(note)
    latex = "\n\n".join([
        "% generated by python -m recsys.report; needs \\usepackage{booktabs}",
        latex_table(main, models, caption_main, fit),
        latex_table(other, models, caption_other),
    ]) + "\n"  # fmt: skip
    atomic_write_text(out / "results.tex", latex)
    atomic_write_text(out / "results.md", "\n".join(markdown))
    return out / "results.md"


def _latex_escape(text: str) -> str:
    return (text.replace("%", "\\%").replace("±", "$\\pm$").replace("†", "$^\\dagger$")
            .replace("α", "$\\alpha$"))  # fmt: skip


# -- figures --------------------------------------------------------------------------------
def figure(runs: Runs, name: str):
    """One of the report's figures (a matplotlib Figure, or ``None`` if it does not apply):
    ``metric_bars``, ``metric_vs_k``, ``time_vs_ndcg``, ``popularity_bias``, ``coverage``,
    ``item_embeddings``."""
    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    return FIGURES[name](runs)


def write_figures(runs: Runs, folder: Path) -> list[str]:
    """Draw every figure as PNG and PDF into ``folder``; return their names."""
    folder.mkdir(parents=True, exist_ok=True)
    drawn = []
    for name in FIGURES:
        figure_ = figure(runs, name)
        if figure_ is None:
            continue
        figure_.savefig(folder / f"{name}.png", dpi=200, bbox_inches="tight")
        figure_.savefig(folder / f"{name}.pdf", bbox_inches="tight",
                        metadata={"CreationDate": None})  # fmt: skip
        plt.close(figure_)
        drawn.append(name)
    return drawn


def _summary(runs: Runs, key: str) -> tuple[np.ndarray, np.ndarray]:
    grouped = runs.table.groupby("model")[key]
    means = grouped.mean()
    return (np.array([means[m] for m in runs.models]),
            np.array([confidence_interval(grouped.get_group(m)) for m in runs.models]))


def _metric_bars(runs: Runs):
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for axis, metric in zip(axes, ("ndcg", "recall"), strict=True):
        means, errors = _summary(runs, mlflow_key(f"test/{metric}@10"))
        axis.bar(runs.models, means, yerr=np.nan_to_num(errors), capsize=3, color="#4C72B0")
        axis.set_ylabel(f"test {LABELS[metric]}@10 (fraction, 0–1)")
        axis.set_xlabel("model")
        axis.tick_params(axis="x", rotation=45)
        for label in axis.get_xticklabels():
            label.set_horizontalalignment("right")
    figure.suptitle("Test metrics at K = 10: mean over seeds, 95% confidence interval")
    figure.tight_layout()
    return figure


def _metric_vs_k(runs: Runs):
    ks = sorted({int(c.rsplit("_at_", 1)[1]) for c in runs.table.columns
                 if c.startswith("test/ndcg_at_")})  # fmt: skip
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
    for axis, metric in zip(axes, ("ndcg", "recall"), strict=True):
        for model in runs.models:
            rows = runs.table[runs.table["model"] == model]
            axis.plot(ks, [rows[mlflow_key(f"test/{metric}@{k}")].mean() for k in ks],
                      marker="o", label=model)  # fmt: skip
        axis.set_xlabel("cut-off K (number of recommended items)")
        axis.set_ylabel(f"test {LABELS[metric]}@K (fraction, 0–1)")
        axis.set_xticks(ks)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    figure.suptitle("Test metrics against the cut-off K (mean over seeds)")
    figure.tight_layout()
    return figure


def _time_vs_ndcg(runs: Runs):
    seconds, _ = _summary(runs, "time/fit_seconds")
    ndcg, errors = _summary(runs, mlflow_key("test/ndcg@10"))
    figure, axis = plt.subplots(figsize=(7, 4))
    markers = "osD^vP*X"
    for i, model in enumerate(runs.models):  # one colour and marker per model, in a legend
        axis.errorbar(max(seconds[i], 1e-3), ndcg[i], yerr=np.nan_to_num(errors[i]), capsize=3,
                      fmt=markers[i % len(markers)], markersize=7, label=model)  # fmt: skip
    axis.set_xscale("log")
    axis.margins(x=0.12, y=0.1)
    axis.set_xlabel("training time (seconds, log scale, 2 CPU cores; < 1 ms drawn at 1 ms)")
    axis.set_ylabel("test NDCG@10 (fraction, 0–1)")
    axis.set_title("Training time against accuracy (mean over seeds, 95% CI)")
    axis.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    figure.tight_layout()
    return figure


def _artifact(runs: Runs, run_id: str, path: str, folder: str) -> np.ndarray:
    return np.load(runs.client.download_artifacts(run_id, path, f"{folder}/{run_id}"))


def _popularity_bias(runs: Runs):
    shares = {}
    with tempfile.TemporaryDirectory() as folder:
        for model, group in runs.table.groupby("model"):
            per_seed = []
            for run_id in group["run_id"]:
                top = _artifact(runs, run_id, "metrics/test_top_items.npy", folder)[:, :10]
                counts = _artifact(runs, run_id, "metrics/train_item_counts.npy", folder)
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
    axis.set_title("Popularity bias of the top-10 recommendations (mean over seeds)")
    axis.legend(loc="upper left", ncol=2, frameon=False, fontsize=8)
    figure.tight_layout()
    return figure


def _coverage(runs: Runs):
    means, errors = _summary(runs, mlflow_key("test/coverage@10"))
    figure, axis = plt.subplots(figsize=(6, 3.6))
    axis.bar(runs.models, 100 * means, yerr=100 * np.nan_to_num(errors), capsize=3,
             color="#55A868")  # fmt: skip
    axis.set_ylabel("catalogue coverage@10 (% of items)")
    axis.set_xlabel("model")
    axis.set_title("Share of the catalogue in at least one user's top 10")
    axis.tick_params(axis="x", rotation=45)
    for label in axis.get_xticklabels():
        label.set_horizontalalignment("right")
    figure.tight_layout()
    return figure


def _item_embeddings(runs: Runs):
    with_vectors = runs.table[runs.table["has_embeddings"]]
    if with_vectors.empty:
        return None
    key = mlflow_key("test/ndcg@10")
    best_model = with_vectors.groupby("model")[key].mean().idxmax()
    chosen = with_vectors[with_vectors["model"] == best_model].sort_values("seed")
    run_id = chosen["run_id"].iloc[0]
    with tempfile.TemporaryDirectory() as folder:
        vectors = _artifact(runs, run_id, "embeddings/item_embeddings.npy", folder)
        item_ids = _artifact(runs, run_id, "embeddings/item_ids.npy", folder)
        cfg = OmegaConf.load(runs.client.download_artifacts(run_id, "config.yaml", folder))
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
    parser = argparse.ArgumentParser(prog="python -m recsys.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="ml-100k-benchmark")
    parser.add_argument("--filter", default="",
                        help="MLflow filter, e.g. \"tags.model != 'random'\"")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--out", default="reports")
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--test", choices=("wilcoxon", "ttest"), default="wilcoxon")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        runs = load_runs(MlflowClient(args.tracking_uri), args.experiment, args.filter)
        path = write_report(runs, Path(args.out), args.ks, args.alpha, args.test)
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {path}, {path.with_suffix('.tex')} and figures/ from {len(runs.table)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
