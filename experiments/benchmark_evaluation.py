"""How long evaluating every user takes: rank the full catalogue (training items excluded) and
compute all metrics at K in {5, 10, 20}, for the default ALS on the default ML-100K split.

    python experiments/benchmark_evaluation.py [--data-dir DIR] [--repeats 20]

Prints the median and best wall time of (a) the whole ``evaluate`` call (scoring, masking,
top-K, metrics) and (b) the metrics alone on a precomputed top-K matrix.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from recsys.cli import ArgumentParser, one_line_errors, positive_int
from recsys.config import build_model, compose_config, load_split
from recsys.metrics import evaluate, ranking_metrics

KS = [5, 10, 20]


def timed(function, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = ArgumentParser("experiments/benchmark_evaluation.py", description=__doc__)
    parser.add_argument("--data-dir", default=None,
                        help="the data folder (default: data.dir: $RECSYS_DATA_DIR, else "
                             "~/.cache/recsys/data)")
    parser.add_argument("--repeats", type=positive_int, default=20)
    args = parser.parse_args()

    where = [f"data.dir={args.data_dir}"] if args.data_dir else []
    cfg = compose_config(["model=als", *where])  # the default protocol
    split = load_split(cfg).split
    train, validation, test = (split.train.to_csr(), split.validation.to_csr(),
                               split.test.to_csr())  # fmt: skip
    seen = train + validation
    model = build_model(cfg.model, cfg.seed).fit(train)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    top_items, _ = model.recommend(users, max(KS), exclude=seen)

    full = timed(lambda: evaluate(model, test, seen, KS), args.repeats)
    metrics_only = timed(lambda: ranking_metrics(top_items, test[users], KS), args.repeats)
    print(f"{len(users)} users x {test.shape[1]} items, K in {KS}, {args.repeats} repeats")
    for name, seconds in (("evaluate (score+mask+top-K+metrics)", full),
                          ("metrics only (given top-K)", metrics_only)):  # fmt: skip
        print(f"{name:<38} median {statistics.median(seconds) * 1e3:7.2f} ms   "
              f"best {min(seconds) * 1e3:7.2f} ms")


if __name__ == "__main__":
    with one_line_errors():
        main()
