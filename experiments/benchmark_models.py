"""Train and evaluate every model with its default config; print time and test NDCG@10 each.

    python experiments/benchmark_models.py [--data-dir data] [--models als ease ...] [ARGS...]

Extra Hydra overrides apply to every model listed (``seed=7``; ``model.trainer.device=cuda``
with ``--models bpr two_tower graphsage``, the models that have a trainer). Runs through the same
``run`` as ``python -m recsys.train``, without MLflow logging.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

from recsys.config import compose_config, model_names
from recsys.train import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--models", nargs="+", default=model_names(),
                        help="default: every file of conf/model/")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every model")
    args = parser.parse_args()
    print(f"{'model':<11}{'fit s':>9}{'total s':>9}{'epochs':>8}{'test NDCG@10':>14}", flush=True)
    total = 0.0
    for model in args.models:
        cfg = compose_config([f"model={model}", f"data.dir={args.data_dir}",
                              "tracking.enabled=false", *args.overrides])  # fmt: skip
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the run's own table
            metrics = run(cfg)
        seconds = time.perf_counter() - start
        total += seconds
        epochs = metrics.get("train/best_epoch")
        epochs = "" if epochs is None else f"{int(epochs)}/{int(metrics['train/epochs_run'])}"
        print(f"{model:<11}{metrics['time/fit_seconds']:>9.1f}{seconds:>9.1f}{epochs:>8}"
              f"{metrics['test/ndcg@10']:>14.4f}", flush=True)  # fmt: skip
    print(f"{'all':<11}{'':>9}{total:>9.1f}")


if __name__ == "__main__":
    main()
