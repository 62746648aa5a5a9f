"""What each GraphSAGE design choice is worth: our tuned default (conf/model/graphsage.yaml),
Hamilton et al.'s classic configuration (graphsage_classic.yaml), and the default with one
choice at a time switched to the classic one.

    python experiments/graphsage_ablation.py [--seeds 1 2 3] [--data-dir DIR]
                                             [--tracking-uri sqlite:///mlflow.db] [--out reports]
                                             [-- OVERRIDE ...]   (after --: --seeds takes a list)

Each variant is a real ``recsys.train`` run on the default protocol (msr, refit), logged to the
MLflow experiment ``<data>-<protocol>-graphsage-ablation``. Prints and writes
``graphsage_ablation.md``: validation and test NDCG@10 (mean ± 95 % CI over the seeds), epochs
and fit time per variant, and each variant's test difference from the default.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.cli import ArgumentParser, one_line_errors, split_seed
from recsys.config import compose_config
from recsys.files import atomic_write_text
from recsys.report import confidence_interval
from recsys.train import run

# (row, overrides from the default), one classic choice at a time
VARIANTS = [
    ("default (graphsage.yaml)", ["model=graphsage"]),
    ("aggregation: mean (not symmetric)", ["model=graphsage", "model.aggregation=mean"]),
    ("root weight (self transform)", ["model=graphsage", "model.root_weight=true"]),
    ("activation: ReLU", ["model=graphsage", "model.activation=relu"]),
    ("combine: last layer (not mean)", ["model=graphsage", "model.combine=last"]),
    ("no edge dropout", ["model=graphsage", "model.edge_dropout=0.0"]),
    ("maps free (no map_decay)", ["model=graphsage", "model.map_decay=0.0"]),
    ("classic (graphsage_classic.yaml)", ["model=graphsage_classic"]),
]


def main() -> None:
    parser = ArgumentParser("experiments/graphsage_ablation.py", description=__doc__)
    parser.add_argument("--seeds", type=split_seed, nargs="+", default=[1, 2, 3])
    parser.add_argument("--data-dir", default=None,
                        help="the data folder (default: data.dir: $RECSYS_DATA_DIR, else "
                             "~/.cache/recsys/data)")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides for every run, e.g. protocol.refit=false")
    args = parser.parse_args()
    base = ["model.trainer.progress=false",
            "tracking.experiment=${data.name}-${protocol.name}-graphsage-ablation"]  # fmt: skip
    if args.data_dir:
        base.append(f"data.dir={args.data_dir}")
    if args.tracking_uri:
        base.append(f"tracking.uri={args.tracking_uri}")
    base += args.overrides
    rows = []
    for name, overrides in VARIANTS:
        for seed in args.seeds:
            slug = re.sub(r"[^a-z0-9]+", "-", overrides[-1].lower()).strip("-")
            metrics = run(compose_config([*overrides, *base, f"seed={seed}",
                                          f"tracking.run_name={slug}-seed{seed}"]))
            rows.append({"variant": name, "seed": seed, "val": metrics["val/ndcg@10"],
                         "test": metrics["test/ndcg@10"],
                         "epochs": metrics.get("train/best_epoch", np.nan),
                         "fit": metrics["time/fit_seconds"]
                         + metrics.get("time/refit_seconds", 0.0)})  # fmt: skip
        text = ablation_table(pd.DataFrame(rows), args.seeds, args.overrides)
        atomic_write_text(args.out / "graphsage_ablation.md", text)  # after each variant
    print(text)


def ablation_table(table: pd.DataFrame, seeds: list[int], overrides: list[str]) -> str:
    """The markdown table of the variants run so far, with its note."""
    default = table[table["variant"] == VARIANTS[0][0]].set_index("seed")["test"]
    lines = ["| variant | val NDCG@10 | test NDCG@10 | test vs default | best epoch | fit s |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name in table["variant"].unique():
        part = table[table["variant"] == name].set_index("seed")
        cells = [_cell(part[c]) for c in ("val", "test")]
        difference = (part["test"] - default.reindex(part.index)).mean()
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {difference:+.4f} | "
                     f"{part['epochs'].mean():.0f} | {part['fit'].mean():.0f} |")
    seeds_text = ", ".join(str(s) for s in seeds)
    settings = f" with {' '.join(overrides)}" if overrides else ""
    return ("# GraphSAGE ablation\n\n" + "\n".join(lines) + "\n\n"
            f"Protocol msr{settings}, seeds {seeds_text}: mean ± half-width of the 95 % "
            f"confidence interval (n/a with one seed); 'test vs default' is the mean paired "
            f"difference per seed. Each row changes one choice of conf/model/graphsage.yaml to "
            f"Hamilton et al.'s, the last changes all six. Fit time includes any refit (2 "
            f"CPU cores, shared with other jobs). Generated by `python "
            f"experiments/graphsage_ablation.py`.\n")  # fmt: skip


def _cell(values: pd.Series) -> str:
    half_width = confidence_interval(values)
    return f"{values.mean():.4f}" + ("" if np.isnan(half_width) else f" ± {half_width:.4f}")


if __name__ == "__main__":
    with one_line_errors():
        main()
