"""recsys' numbers next to other numbers: a published table, and the protocols side by side.

    python -m recsys.literature published --experiment ml-100k-msr-benchmark \\
        --table conf/literature/msr_ml100k.yaml --out reports [--readme README.md [--force]]
    python -m recsys.literature protocols --experiment ml-100k-protocols \\
        --out reports/protocols [--readme README.md [--force]]

``published`` writes ``literature.md`` and ``figures/literature.png|pdf``: the rows a paper or
benchmark printed (``conf/literature/*.yaml``, copied once from the source) next to recsys'
models on the same protocol, mean ± 95 % CI over seeds, with MAP in both definitions.
``protocols`` writes ``protocols.md``: the same models under every protocol preset of an
experiment (``experiment=protocols``), one column group a protocol; each cell is computed
within its protocol, never across. Both read finished MLflow runs, like ``recsys.report``;
a ``--readme`` section made from another experiment (its first line records which) is replaced
only with ``--force``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from recsys.cli import ArgumentParser
from recsys.config import compose_config, reads_times
from recsys.docs import read_readme, replace_section
from recsys.errors import ConfigError, RecsysError
from recsys.files import atomic_write_text
from recsys.report import LABELS, Runs, confidence_interval, describe_protocol, load_runs
from recsys.tracking import mlflow_key, open_client

PUBLISHED_METRICS = ("map_r", "map", "ndcg", "precision", "recall")
PROTOCOL_METRICS = ("ndcg", "recall", "hit_rate")


# -- a published table ------------------------------------------------------------------------
def load_published(path: str | Path) -> dict:
    """A published table (``conf/literature/*.yaml``): name, protocol, k, rows."""
    try:
        table = OmegaConf.to_container(OmegaConf.load(path))
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the published table {path}: {error}") from None
    missing = {"name", "protocol", "k", "rows"} - set(table)
    if missing:
        raise ConfigError(f"{path} lacks {', '.join(sorted(missing))}")
    return table


def published_rows(runs: Runs, published: dict) -> list[dict]:
    """The published rows and recsys' rows (mean and CI half-width), best NDCG first."""
    if runs.protocol.get("protocol.name") != published["protocol"]:
        raise ConfigError(f"{published['name']} used the {published['protocol']} protocol; "
                          f"the runs of {runs.experiment!r} used "
                          f"{runs.protocol.get('protocol.name')!r}: train them with "
                          f"protocol={published['protocol']}")  # fmt: skip
    k = published["k"]
    rows = [{"source": "published", "algorithm": row["algorithm"],
             **{m: (row.get(m), None) for m in PUBLISHED_METRICS}}
            for row in published["rows"]]  # fmt: skip
    grouped = runs.table.groupby("model")
    for model in runs.models:
        row = {"source": "recsys", "algorithm": model,
               "seeds": sorted(grouped.get_group(model)["seed"].unique()),
               "family": [r for r in published["rows"] if model in r.get("family", [])]}
        for metric in PUBLISHED_METRICS:
            column = grouped[mlflow_key(f"test/{metric}@{k}")]
            row[metric] = (column.mean()[model], confidence_interval(column.get_group(model)))
        rows.append(row)
    return sorted(rows, key=lambda row: -row["ndcg"][0])


def published_markdown(runs: Runs, published: dict) -> str:
    k = published["k"]
    names = [f"MAP@{k} ÷\\|R\\|" if m == "map_r" else f"{LABELS[m]}@{k}"
             for m in PUBLISHED_METRICS]  # fmt: skip
    header = ["source", "algorithm", *names, f"NDCG@{k} against its family"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in published_rows(runs, published):
        cells = [_cell(*row[m]) for m in PUBLISHED_METRICS]
        family = "; ".join(f"{f['algorithm']} {row['ndcg'][0] - f['ndcg']:+.4f}"
                           for f in row.get("family", []))  # fmt: skip
        seeds = row.get("seeds", [])
        source = ("published" if row["source"] == "published" else
                  f"recsys, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
        lines.append(f"| {source} | {row['algorithm']} | " + " | ".join(cells)
                     + f" | {family} |")  # fmt: skip
    return "\n".join(lines)


def published_note(runs: Runs, published: dict) -> str:
    k = published["k"]
    return (f"Protocol {published['protocol']}: {describe_protocol(runs)}. Published rows: the "
            f"values {published['name']} printed ({published.get('source', 'see the table file')}"
            f"); its MAP divides by the number of relevant items (recsys' `map_r`); recsys' own "
            f"MAP@{k} divides by min({k}, |R|). recsys rows: mean ± half-width of the 95% "
            f"confidence interval over the seeds (MLflow experiment {runs.experiment}). NDCG@{k} "
            f"against its family: recsys' model minus the published algorithm it is compared "
            f"with.{timed_note(runs, published)}")


def timed_note(runs: Runs, published: dict) -> str:
    """Sentences naming the rows that learn from when the training ratings were given: recsys'
    (their model's YAML now, ``recsys.config.reads_times``) and the published table's (its
    rows' ``reads_times``: how they read them, in words); empty without such rows."""
    names = sorted({row["algorithm"] for row in published_rows(runs, published)
                    if row["source"] != "published" and _reads_times(row["algorithm"])})
    theirs = [f"{row['algorithm']} ({row['reads_times']})" for row in published["rows"]
              if row.get("reads_times")]  # fmt: skip
    note = ""
    if names:
        subject = "these models learn" if len(names) > 1 else "this model learns"
        note = (f" {', '.join(names)}: {subject} also from when the training ratings were given "
                f"(no test rating's time is read).")
    if theirs:
        note += f" Published rows that read the ratings' times too: {'; '.join(theirs)}."
    return note


def _reads_times(name: str) -> bool:
    try:
        return reads_times(compose_config([f"model={name}"]).model)
    except ConfigError:  # a model no longer in conf/model/
        return False


def _cell(mean, half_width) -> str:
    if mean is None:
        return "—"
    if half_width is None or np.isnan(half_width):
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {half_width:.4f}"


def write_published(runs: Runs, published: dict, out: Path) -> Path:
    """``literature.md`` and ``figures/literature.png|pdf`` in ``out``."""
    text = [f"# recsys next to {published['name']}", "", published_note(runs, published), "",
            published_markdown(runs, published), "", "![literature](figures/literature.png)",
            ""]  # fmt: skip
    figure = published_figure(runs, published)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    figure.savefig(out / "figures" / "literature.png", dpi=200, bbox_inches="tight")
    figure.savefig(out / "figures" / "literature.pdf", bbox_inches="tight",
                   metadata={"CreationDate": None})  # fmt: skip
    plt.close(figure)
    atomic_write_text(out / "literature.md", "\n".join(text))
    return out / "literature.md"


def published_figure(runs: Runs, published: dict):
    """NDCG bars: recsys solid with its CI, the published rows hatched; best at the top."""
    rows = published_rows(runs, published)[::-1]
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    for position, row in enumerate(rows):
        mean, half_width = row["ndcg"]
        ours = row["source"] == "recsys"
        axis.barh(position, mean, xerr=np.nan_to_num(half_width) if ours else None, capsize=3,
                  color="#4C72B0" if ours else "white", hatch=None if ours else "//",
                  edgecolor="#4C72B0" if ours else "grey")  # fmt: skip
    axis.set_yticks(range(len(rows)), [f"{r['algorithm']} ({r['source']})" for r in rows])
    axis.set_xlabel(f"test NDCG@{published['k']} (fraction, 0–1)")
    axis.set_title(f"recsys (solid, 95% CI) next to {published['name']} (hatched)", fontsize=9)
    figure.tight_layout()
    return figure


# -- the protocols side by side ---------------------------------------------------------------
def protocol_runs(client: MlflowClient, experiment: str) -> dict[str, Runs]:
    """The experiment's runs, one ``Runs`` a protocol (each checked to be one protocol)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ConfigError(f"no MLflow experiment {experiment!r} in {client.tracking_uri}: run "
                          f"`python -m recsys.train -m experiment=protocols`")  # fmt: skip
    names = sorted({r.data.params.get("protocol.name") for r in client.search_runs(
        [found.experiment_id], "attributes.status = 'FINISHED'", max_results=10_000)} - {None})
    if not names:
        raise ConfigError(f"no finished runs with a protocol in {experiment!r}")
    return {name: load_runs(client, experiment, f"params.`protocol.name` = '{name}'")
            for name in names}  # fmt: skip


def protocols_markdown(by_protocol: dict[str, Runs], k: int = 10) -> str:
    """Models as rows, protocol x metric as columns (mean ± CI over seeds); a protocol whose
    test users include some without history gets one more column: NDCG@k over the others."""
    models = []  # weakest first, as the first protocol orders them
    for runs in by_protocol.values():
        models += [m for m in runs.models if m not in models]
    columns = []  # (protocol, metric, header)
    for name, runs in by_protocol.items():
        columns += [(name, f"test/{m}@{k}", f"{name}: {LABELS[m]}@{k}") for m in PROTOCOL_METRICS]
        if cold_counts(runs):
            columns.append((name, f"test/with_history/ndcg@{k}", f"{name}: NDCG@{k} with history"))
    header = ["model", *[label for *_, label in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    values = {}  # (protocol, metric): {model: its seeds' values}
    for name, metric, _ in columns:
        table = by_protocol[name].table
        if mlflow_key(metric) in table:
            values[name, metric] = dict(list(table.groupby("model")[mlflow_key(metric)]))
    for model in models:
        cells = []
        for name, metric, _ in columns:
            seeds = values.get((name, metric), {}).get(model, pd.Series(dtype=float)).dropna()
            cells.append(_cell(seeds.mean(), confidence_interval(seeds)) if len(seeds) else "—")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cold_counts(runs: Runs) -> tuple[str, str] | None:
    """How many of the test users had no training or validation interaction, and how many were
    evaluated (each ``"n"``, or ``"n1–n2"`` where the seeds' splits differ), or ``None`` if no
    run had such a user (or the runs predate the count)."""
    key = mlflow_key("test/n_users_without_history")
    if key not in runs.table or not (runs.table[key].fillna(0) > 0).any():
        return None

    def span(values: pd.Series) -> str:
        low, high = int(values.min()), int(values.max())
        return str(low) if low == high else f"{low}–{high}"

    return span(runs.table[key].dropna()), span(runs.table[mlflow_key("test/n_users")])


def protocols_note(by_protocol: dict[str, Runs], k: int = 10) -> str:
    described = " ".join(f"**{name}**: {describe_protocol(runs)}."
                         for name, runs in by_protocol.items())  # fmt: skip
    seeds = sorted({s for runs in by_protocol.values() for s in runs.table["seed"]})
    cold = ""
    for name, runs in by_protocol.items():
        counts = cold_counts(runs)
        if counts:
            cold += (f" Under {name}, {counts[0]} of the {counts[1]} test users have no "
                     f"training or validation interaction. Each model gives all of them one "
                     f"list, the one it gives an empty history: for a model that scores from "
                     f"co-occurrence or factors (EASE, ALS, ItemKNN), the order of its ties, the "
                     f"lowest item ids; \"NDCG@{k} with history\" averages over the other users "
                     f"only.")
    return (f"Test metrics, mean ± half-width of the 95% confidence interval over seeds "
            f"{', '.join(map(str, seeds))}, each cell within one protocol (a split that does "
            f"not draw at random, as loo's and temporal's, is the same for every seed: a "
            f"deterministic model then has no spread). {described}{cold}")


def write_protocols(by_protocol: dict[str, Runs], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    text = ["# One model, three protocols", "", protocols_note(by_protocol), "",
            protocols_markdown(by_protocol), ""]  # fmt: skip
    atomic_write_text(out / "protocols.md", "\n".join(text))
    return out / "protocols.md"


# -- command line -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m recsys.literature", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    published = commands.add_parser("published", help="a published table next to the runs")
    published.add_argument("--experiment", default="ml-100k-msr-benchmark")
    published.add_argument("--table", type=Path, default=Path("conf/literature/msr_ml100k.yaml"))
    published.add_argument("--out", type=Path, default=Path("reports"))
    protocols = commands.add_parser("protocols", help="the same models under every protocol")
    protocols.add_argument("--experiment", default="ml-100k-protocols")
    protocols.add_argument("--out", type=Path, default=Path("reports/protocols"))
    for command in (published, protocols):
        command.add_argument("--tracking-uri", default=None)
        command.add_argument("--readme", type=Path, default=None,
                             help="also write the table into this README's generated section")
        command.add_argument("--force", action="store_true",
                             help="replace a --readme section made from another experiment")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    plt.switch_backend("Agg")
    name = "literature" if args.command == "published" else "protocols"
    try:
        readme = None if args.readme is None else read_readme(
            args.readme, name, experiment=args.experiment, force=args.force)
        client = open_client(args.tracking_uri, option="--tracking-uri")
        if args.command == "published":
            table = load_published(args.table)
            runs = load_runs(client, args.experiment)
            path = write_published(runs, table, args.out)
            section = "\n\n".join([published_markdown(runs, table), published_note(runs, table)])
        else:
            by_protocol = protocol_runs(client, args.experiment)
            path = write_protocols(by_protocol, args.out)
            section = "\n\n".join([protocols_markdown(by_protocol), protocols_note(by_protocol)])
        if readme is not None:
            atomic_write_text(args.readme, replace_section(readme, name, section,
                                                           experiment=args.experiment))
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {path}" + (" and the README's section" if args.readme else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

