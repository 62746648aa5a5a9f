"""Train and evaluate every model with its default config; print time and test NDCG@10 each.

    python experiments/benchmark_models.py [--data-dir data] [--models als ease ...]
                                           [--jobs 2] [-- OVERRIDE ...]

Extra Hydra overrides (after ``--``) apply to every model listed (``seed=7``;
``model.trainer.device=cuda`` with ``--models bpr two_tower graphsage``, the models that have a
trainer). Runs through the same ``run`` as ``python -m recsys.train``, without MLflow logging and
without the cache of fitted models (a cached fit would time nothing). ``--jobs`` models train at
a time, each in its own process (a torch model trains on one thread), the longest first (by
``reports/report.json``): the last line is the wall time of them all, which is what "all models
train in N minutes on this many cores" measures, and the sum of the models' own times.
``total s`` includes loading the data, the refit on train + validation and the evaluation.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from recsys.config import compose_config, model_names
from recsys.train import run

REPORT = Path(__file__).resolve().parents[1] / "reports" / "report.json"


def train_one(model: str, data_dir: str, overrides: list[str]) -> dict:
    """One model's run: fit seconds, seconds in all, epochs (best/run) and test NDCG@10."""
    cfg = compose_config([f"model={model}", f"data.dir={data_dir}", "tracking.enabled=false",
                          "cache.enabled=false", *overrides])  # fmt: skip
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the run's own table
        metrics = run(cfg)
    epochs = metrics.get("train/best_epoch")
    return {"model": model, "fit": metrics["time/fit_seconds"],
            "total": time.perf_counter() - start,
            "epochs": "" if epochs is None else f"{int(epochs)}/{int(metrics['train/epochs_run'])}",
            "ndcg": metrics["test/ndcg@10"]}  # fmt: skip


def longest_first(models: list[str], report: Path = REPORT) -> list[str]:
    """``models`` in the order that keeps ``--jobs`` workers busy to the end: the longest
    first, by the mean fit seconds of the benchmark that ``report`` was built from (a pool
    that starts the longest model last waits for it alone); a model the report does not
    time first of all, its time unknown. Without a readable report: as given."""
    try:
        seconds = json.loads(report.read_text())["fit_seconds"]
    except (OSError, ValueError, KeyError):
        return list(models)
    return sorted(models, key=lambda model: -seconds.get(model, float("inf")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--models", nargs="+", default=model_names(),
                        help="default: every file of conf/model/")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="models trained at a time")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every model")
    args = parser.parse_args()
    width = max(len(m) for m in [*args.models, "model"]) + 2
    print(f"{'model':<{width}}{'fit s':>9}{'total s':>9}{'epochs':>8}{'test NDCG@10':>14}",
          flush=True)  # fmt: skip
    start, summed = time.perf_counter(), 0.0
    # spawn: a forked worker would inherit torch's and the allocator's state from this process
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        runs = [pool.submit(train_one, model, args.data_dir, args.overrides)
                for model in longest_first(args.models)]  # fmt: skip
        for done in as_completed(runs):  # as each finishes
            row = done.result()
            summed += row["total"]
            print(f"{row['model']:<{width}}{row['fit']:>9.1f}{row['total']:>9.1f}"
                  f"{row['epochs']:>8}{row['ndcg']:>14.4f}", flush=True)  # fmt: skip
    wall = time.perf_counter() - start
    print(f"{'all':<{width}}{'':>9}{wall:>9.1f}  wall s with {args.jobs} at a time "
          f"({summed:.1f} s summed over the models)")


if __name__ == "__main__":
    main()
