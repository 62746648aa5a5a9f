"""Train and evaluate every model with its default config; print time and test NDCG@10 each.

    python experiments/benchmark_models.py [--data-dir DIR] [--models als ease ...]
                                           [--jobs 2] [--devices cpu cuda] [-- OVERRIDE ...]

Extra Hydra overrides (after ``--``) apply to every model listed (``seed=7``). Runs through the
same ``run`` as ``python -m recsys.train``, without MLflow logging and without the cache of
fitted models (a cached fit would time nothing). ``--jobs`` models train at a time, each in its
own process (a torch model trains on one thread), the longest first (by
``reports/report.json``): the last line is the wall time of them all, which is what "all models
train in N minutes on this many cores" measures, and the sum of the models' own times.
``total s`` includes loading the data, the refit on train + validation and the evaluation;
``s/epoch`` is a torch model's median pass over its training data (``time/epoch_seconds``:
validation aside, the first fit's epochs; a first epoch's warm-up does not move it).

``--devices cpu cuda`` trains each model that has a trainer (the torch models; by default all
of them) once per device (``model.trainer.device=...``) and ends with their seconds an epoch
side by side; run it alone on the machine, ``--jobs 1``, so that nothing shares the cores.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from recsys.cli import ArgumentParser, positive_int
from recsys.config import compose_config, model_names
from recsys.errors import RecsysError
from recsys.train import run

REPORT = Path(__file__).resolve().parents[1] / "reports" / "report.json"


def train_one(model: str, data_dir: str | None, overrides: list[str],
              device: str | None = None) -> dict:
    """One model's run (on ``device`` where given): fit seconds, seconds in all, epochs
    (best/run), seconds a training epoch and test NDCG@10."""
    on = [] if device is None else [f"model.trainer.device={device}"]
    where = [f"data.dir={data_dir}"] if data_dir else []
    cfg = compose_config([f"model={model}", *where, "tracking.enabled=false",
                          "cache.enabled=false", *on, *overrides])  # fmt: skip
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the run's own table
        metrics = run(cfg)
    epochs = metrics.get("train/best_epoch")
    return {"model": model, "device": device or "", "fit": metrics["time/fit_seconds"],
            "total": time.perf_counter() - start,
            "epochs": "" if epochs is None else f"{int(epochs)}/{int(metrics['train/epochs_run'])}",
            "epoch_s": metrics.get("time/epoch_seconds"),
            "ndcg": metrics["test/ndcg@10"]}  # fmt: skip


def has_trainer(model: str) -> bool:
    """Whether ``model``'s config has a ``trainer`` (a torch model: it can be put on a device)."""
    return "trainer" in compose_config([f"model={model}"]).model


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
    parser = ArgumentParser("experiments/benchmark_models.py", description=__doc__)
    parser.add_argument("--data-dir", default=None,
                        help="the data folder (default: data.dir: $RECSYS_DATA_DIR, else "
                             "~/.cache/recsys/data)")
    parser.add_argument("--models", nargs="+",
                        help="default: every file of conf/model/ (with --devices: those with a "
                             "trainer)")  # fmt: skip
    parser.add_argument("--jobs", type=positive_int, default=1, help="models trained at a time")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"],
                        help="train each torch model once on each of these devices")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every model")
    args = parser.parse_args()
    try:
        models = args.models or model_names()
        devices = args.devices or [None]
        if args.devices:
            without = [m for m in models if not has_trainer(m)]
            if args.models and without:
                parser.error(f"--devices: no trainer, so no device, in {', '.join(without)}: "
                             f"name torch models only")  # fmt: skip
            models = [m for m in models if m not in without]
        if "cuda" in devices and not torch.cuda.is_available():
            parser.error("--devices cuda: this machine has no CUDA GPU that torch can use")
        rows = benchmark(models, devices, args.data_dir, args.overrides, args.jobs)
    except RecsysError as error:
        sys.exit(f"error: {error}")
    if args.devices:
        print(epoch_table(rows, args.devices))


def benchmark(models: list[str], devices: list[str | None], data_dir: str | None,
              overrides: list[str],
              jobs: int) -> list[dict]:  # fmt: skip
    """Train every (model, device) pair, ``jobs`` at a time, printing a row as each finishes,
    then the wall time of them all; returns the rows."""
    width = max(len(m) for m in [*models, "model"]) + 2
    device = f"{'device':>8}" if devices != [None] else ""
    print(f"{'model':<{width}}{device}{'fit s':>9}{'total s':>9}{'epochs':>8}{'s/epoch':>9}"
          f"{'test NDCG@10':>14}", flush=True)  # fmt: skip
    start, summed, rows = time.perf_counter(), 0.0, []
    # spawn: a forked worker would inherit torch's and the allocator's state from this process
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        runs = [pool.submit(train_one, model, data_dir, overrides, on)
                for model in longest_first(models) for on in devices]  # fmt: skip
        for done in as_completed(runs):  # as each finishes
            if done.exception() is not None:  # a mistake fails every run alike: stop them all
                pool.shutdown(wait=False, cancel_futures=True)
            rows.append(row := done.result())
            summed += row["total"]
            epoch_s = "" if row["epoch_s"] is None else f"{row['epoch_s']:.2f}"
            on = f"{row['device']:>8}" if device else ""
            print(f"{row['model']:<{width}}{on}{row['fit']:>9.1f}{row['total']:>9.1f}"
                  f"{row['epochs']:>8}{epoch_s:>9}{row['ndcg']:>14.4f}", flush=True)  # fmt: skip
    wall = time.perf_counter() - start
    print(f"{'all':<{width}}{device and ' ' * 8}{'':>9}{wall:>9.1f}  wall s with {jobs} at a "
          f"time ({summed:.1f} s summed over the runs)")  # fmt: skip
    return rows


def epoch_table(rows: list[dict], devices: list[str]) -> str:
    """Seconds a training epoch per model (rows) and device (columns), and, with both, the
    CPU's time over the GPU's."""
    seconds = {(row["model"], row["device"]): row["epoch_s"] for row in rows}
    models = sorted({row["model"] for row in rows})
    width = max(len(m) for m in [*models, "model"]) + 2
    both = {"cpu", "cuda"} <= set(devices)
    lines = ["", "seconds an epoch (training, validation aside)",
             f"{'model':<{width}}" + "".join(f"{d:>9}" for d in devices)
             + (f"{'cpu/cuda':>10}" if both else "")]  # fmt: skip
    for model in models:
        line = f"{model:<{width}}" + "".join(f"{seconds[model, d]:>9.2f}" for d in devices)
        if both:
            line += f"{seconds[model, 'cpu'] / seconds[model, 'cuda']:>9.1f}x"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
