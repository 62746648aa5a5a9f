"""Time and peak memory of every stage, from 1 M to 32 M synthetic interactions.

    python experiments/benchmark_scale.py [--sizes 1e6 4e6 16e6 32e6] [--items 16000]
                                          [--models als ease bpr lightgcn] [--graph-max 4e6]
                                          [--out reports]

Each size runs in its own process on ``data=synthetic`` (``--per-user`` interactions a user on
average, a fixed catalogue of ``--items`` films, so that evaluation, ``users x items``, grows
with the interactions as the data does), with the pipeline's own functions: load (generate the
data and index it), split (``msr``'s per-user 75/25, no validation part), then for each model
fit on the training part and evaluate test (full ranking of the catalogue, K = 10 and 20, in
blocks of ``--batch`` users). Every stage prints its wall time, its peak resident memory (the
kernel's high-water mark, reset before the stage) and the peak's rise over the memory in use
when the stage began; a fit also prints what ``recsys.memory`` estimated for it.

The settings are the ones a large catalogue wants, not ML-100K's tuned defaults: ALS 64
factors, 15 iterations; BPR 64 factors, one negative, batches of 8192, one epoch; LightGCN
64-d, 3 layers, batches of 65536, one epoch, up to ``--graph-max`` interactions (its full-graph
step grows with the graph: an epoch at 16 M would take about half an hour here); EASE as
configured, where its ``n_items^2`` arrays fit. Torch models train on all cores (``deterministic:
false``); the times are one run each, on a shared machine: orders of magnitude, not decimals.

Writes ``reports/scale.json``, ``reports/scale.md`` (the table and the log-log slopes of time
against interactions per stage) and ``reports/figures/scale.png``/``.pdf`` (time, and the
memory each stage adds, against interactions); ``--replot`` redraws both from the JSON.

What the numbers showed on 2 cores (``reports/scale.md``): load, split, ALS's fit and every
evaluation grow about linearly; evaluation adds a block's worth of memory at any size; EASE's
fit depends on the catalogue alone; an epoch of BPR grows faster than the interactions, because
a dense Adam step updates every user's and item's vector (a step costs ``users + items``, and
an epoch has ``interactions / batch`` steps); LightGCN's epoch also propagates over the whole
graph at every step, hence its slope near 2.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from recsys.cli import ArgumentParser, one_line_errors, positive_int
from recsys.memory import GIB

MODELS = {
    "als": ["model.factors=64", "model.iterations=15"],
    "ease": [],
    "bpr": ["model.factors=64", "model.negatives=1", "model.trainer.batch_size=8192",
            "model.trainer.epochs=1", "model.trainer.ema=0", "model.trainer.patience=0",
            "model.trainer.min_epochs=0"],
    "lightgcn": ["model.trainer.batch_size=65536", "model.trainer.epochs=1",
                 "model.trainer.ema=0", "model.trainer.patience=0"],
}  # fmt: skip
TORCH = ["model.trainer.deterministic=false", "model.trainer.progress=false"]


# -- one size, in its own process -----------------------------------------------------------
def resident(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak since the last reset) of this process, bytes."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) * 1024


def reset_peak() -> None:
    """Make the kernel's high-water mark start again from the memory in use now."""
    Path("/proc/self/clear_refs").write_text("5")


class Stage:
    """``with Stage(records, "fit", model="als"):`` times the block and records its peak."""

    def __init__(self, records: list, stage: str, **fields):
        self.records, self.record = records, {"stage": stage, **fields}

    def __enter__(self):
        self.before = resident("VmRSS")
        reset_peak()
        self.start = time.perf_counter()
        return self.record

    def __exit__(self, kind, error, trace):
        if kind is not None:
            return False
        seconds = time.perf_counter() - self.start
        peak = resident("VmHWM")
        self.record |= {"seconds": round(seconds, 2), "peak_gib": round(peak / GIB, 3),
                        "rise_gib": round((peak - self.before) / GIB, 3)}  # fmt: skip
        self.records.append(self.record)
        print(json.dumps(self.record), flush=True)
        return False


def one_size(args) -> None:
    import torch  # noqa: F401 - imported before the stages, so no stage pays for the import

    from recsys.config import build_model, compose_config, load_data
    from recsys.data import to_interactions
    from recsys.errors import ConfigError
    from recsys.memory import check_fits
    from recsys.metrics import evaluate
    from recsys.split import RandomRatioSplit

    n = int(args.one)
    users = max(1, round(n / args.per_user))
    records: list[dict] = []
    size = {"interactions": n, "users": users, "items": args.items}
    data_cfg = compose_config(["data=synthetic", f"data.users={users}",
                               f"data.items={args.items}", f"data.interactions={n}"]).data
    with Stage(records, "load", **size):
        data = load_data(data_cfg)
        interactions = to_interactions(data.ratings, data.users["user_id"],
                                       data.items["item_id"])  # fmt: skip
        del data
    with Stage(records, "split", **size):
        split = RandomRatioSplit(test_ratio=0.25, val_ratio=0.0)(interactions, seed=1)
        del interactions
        train, test = split.train.to_csr(), split.test.to_csr()
    for name in args.models:
        if name == "lightgcn" and n > args.graph_max:
            continue
        overrides = MODELS[name] + (TORCH if name in ("bpr", "lightgcn") else [])
        cfg = compose_config([f"model={name}", *overrides])
        model = build_model(cfg.model, seed=1)
        try:
            need = check_fits(model, name, train, args.batch)
        except ConfigError as error:
            print(json.dumps({"stage": "fit", "model": name, **size, "refused": str(error)}))
            records.append({"stage": "fit", "model": name, **size, "refused": str(error)})
            continue
        with Stage(records, "fit", model=name, **size) as record:
            model.fit(train)
            record["estimate_gib"] = round(need.total / GIB, 3)
        with Stage(records, "evaluate", model=name, batch=args.batch, **size) as record:
            result = evaluate(model, test, train, [10, 20], batch_size=args.batch)
            record["ndcg@10"] = round(result.summary["ndcg@10"], 4)
        del model
    Path(args.records).write_text(json.dumps(records))


# -- all sizes, and the report --------------------------------------------------------------
def slopes(records: list[dict]) -> dict[str, float]:
    """Least-squares slope of log(seconds) on log(interactions) per stage (and model)."""
    by_key: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        if "seconds" in r:
            key = r["stage"] if "model" not in r else f"{r['stage']} {r['model']}"
            by_key.setdefault(key, []).append((r["interactions"], max(r["seconds"], 1e-3)))
    return {key: float(np.polyfit(np.log(np.array(points)[:, 0]),
                                  np.log(np.array(points)[:, 1]), 1)[0])
            for key, points in by_key.items() if len({p[0] for p in points}) > 1}  # fmt: skip


def markdown(records: list[dict], fitted: dict[str, float], command: str) -> str:
    lines = ["# Scale: time and peak memory per stage on synthetic data", "",
             f"Generated by `{command}`. Synthetic data (`data=synthetic`), 160 interactions "
             f"a user, a fixed catalogue; split 75/25 per user, no validation part, seed 1. "
             f"Fit settings: ALS 64 factors, 15 iterations; EASE its default; BPR 64 factors, "
             f"one negative, batches of 8192, one epoch; LightGCN 64-d, 3 layers, batches of "
             f"65536, one epoch, only up to the `--graph-max` size (its full-graph epoch grows "
             f"with the square of the graph); torch on both cores. Evaluation: test, full "
             f"ranking, K = 10 and 20, blocks of 1024 users.", "",
             "Peak: the process's resident high-water mark during the stage; rise: the peak "
             "over the memory in use when the stage began. Estimate: what `recsys.memory` "
             "checked before the fit, which also counts the training matrix (already in the "
             "rise's baseline) and one ranking block. One run each, on a 2-core machine: orders "
             "of magnitude.", "",
             "| interactions | users | items | stage | model | seconds | peak GiB | rise GiB "
             "| estimate GiB | NDCG@10 |", "|" + " --- |" * 10]  # fmt: skip
    for r in records:
        if "refused" in r:
            lines.append(f"| {r['interactions']:,} | {r['users']:,} | {r['items']:,} | fit | "
                         f"{r['model']} | refused before training | | | | |")  # fmt: skip
            continue
        lines.append(
            f"| {r['interactions']:,} | {r['users']:,} | {r['items']:,} | {r['stage']} | "
            f"{r.get('model', '')} | {r['seconds']:.1f} | {r['peak_gib']:.2f} | "
            f"{r['rise_gib']:.2f} | {r.get('estimate_gib', '')} | {r.get('ndcg@10', '')} |")
    lines += ["", "Log-log slope of time against interactions (1: linear):", "",
              "| stage | slope |", "| --- | --- |"]
    lines += [f"| {key} | {value:.2f} |" for key, value in sorted(fitted.items())]
    refused = [r for r in records if "refused" in r]
    if refused:
        lines += ["", "Refused before training:", ""]
        lines += [f"- {r['interactions']:,} interactions: {r['refused']}" for r in refused]
    return "\n".join(lines) + "\n"


def figure(records: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in records if "seconds" in r]
    keys = sorted({(r["stage"], r.get("model", "")) for r in timed})
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for stage, model in keys:
        rows = sorted((r for r in timed if (r["stage"], r.get("model", "")) == (stage, model)),
                      key=lambda r: r["interactions"])  # fmt: skip
        x = [r["interactions"] for r in rows]
        label = f"{stage} {model}".strip()
        style = "--" if stage == "evaluate" else "-"
        left.plot(x, [r["seconds"] for r in rows], style, marker="o", label=label)
        right.plot(x, [r["rise_gib"] for r in rows], style, marker="o", label=label)
    sizes = np.array(sorted({r["interactions"] for r in timed}), dtype=float)
    left.plot(sizes, sizes / sizes[0], ":", color="grey", label="slope 1 (linear)")
    for axis, title in ((left, "wall time (s)"),
                        (right, "memory a stage adds at its peak (GiB)")):  # fmt: skip
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("interactions")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               frameon=False)  # fmt: skip
    fig.tight_layout()
    (out / "figures").mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "figures" / "scale.png", dpi=200, bbox_inches="tight")
    fig.savefig(out / "figures" / "scale.pdf", bbox_inches="tight",
                metadata={"CreationDate": None})  # fmt: skip
    plt.close(fig)


def main() -> None:
    parser = ArgumentParser("experiments/benchmark_scale.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 4e6, 16e6, 32e6])
    parser.add_argument("--items", type=positive_int, default=16_000)
    parser.add_argument("--per-user", type=float, default=160.0)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--graph-max", type=float, default=4e6)
    parser.add_argument("--batch", type=positive_int, default=1024, help="users ranked at once")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--replot", action="store_true",
                        help="redraw scale.md and the figure from <out>/scale.json, run nothing")
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--records", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        one_size(args)
        return
    from recsys.files import atomic_write_text

    if min(args.sizes) < 1 or args.per_user <= 0 or args.graph_max < 0:
        parser.error("--sizes and --per-user must be positive, --graph-max at least 0")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file, not a folder")
    if args.replot:
        if not (args.out / "scale.json").is_file():
            parser.error(f"--replot: no {args.out / 'scale.json'} to redraw: run without "
                         f"--replot first")  # fmt: skip
        saved = json.loads((args.out / "scale.json").read_text())
        atomic_write_text(args.out / "scale.md",
                          markdown(saved["records"], saved["slopes"], saved["command"]))
        figure(saved["records"], args.out)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for n in args.sizes:
        target = args.out / f".scale-{int(n)}.json"
        command = [sys.executable, __file__, "--one", str(n), "--records", str(target),
                   "--items", str(args.items), "--per-user", str(args.per_user),
                   "--graph-max", str(args.graph_max), "--batch", str(args.batch),
                   "--models", *args.models]  # fmt: skip
        subprocess.run(command, check=True)
        records += json.loads(target.read_text())
        target.unlink()
    shown = " ".join(["python experiments/benchmark_scale.py", *sys.argv[1:]])
    fitted = slopes(records)
    atomic_write_text(args.out / "scale.json", json.dumps(
        {"command": shown, "records": records, "slopes": fitted}, indent=1) + "\n")
    atomic_write_text(args.out / "scale.md", markdown(records, fitted, shown))
    figure(records, args.out)
    print(markdown(records, fitted, shown))


if __name__ == "__main__":
    with one_line_errors():
        main()
