"""EASE's user weight: validation and test NDCG@10 for each ``model.user_weight``.

    python experiments/ease_user_weight.py [--weights 0 0.1 0.2 0.35 0.5 0.75 1] [-- OVERRIDE ...]

Every other setting is conf/model/ease.yaml's (or an override's, e.g. ``model.regularization=150
model.dropout=0.669``, the defaults before user weights). Validation: fitted on the training part
and judged on the validation part of split seeds 42, 43, 44 (what ``recsys.tune`` ranks by).
Test: the ``msr`` protocol as the benchmark runs it (refit on train + validation), seeds 1-5,
with each seed's difference from the first weight listed; shown for information only: the
default comes from the study, which sees validation alone.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from recsys.cli import ArgumentParser, one_line_errors
from recsys.config import compose_config
from recsys.train import run


def ndcg(weight: float, seeds: list[int], part: str, overrides: list[str]) -> np.ndarray:
    """``(len(seeds),)`` NDCG@10 of ``part`` (val or test) with this user weight; validation
    needs no refit (it judges the model fitted on the training part)."""
    refit = "true" if part == "test" else "false"
    values = []
    for seed in seeds:
        cfg = compose_config(["model=ease", f"model.user_weight={weight}", f"seed={seed}",
                              f"protocol.refit={refit}", "tracking.enabled=false",
                              "cache.enabled=false", *overrides])  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):  # the run's own table
            values.append(run(cfg)[f"{part}/ndcg@10"])
    return np.array(values)


def main() -> None:
    parser = ArgumentParser("experiments/ease_user_weight.py", description=__doc__)
    parser.add_argument("--weights", type=float, nargs="+",
                        default=[0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0])  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_args()
    print("| user_weight | val NDCG@10 (seeds 42-44) | test NDCG@10 (seeds 1-5) "
          "| test vs first, per seed |")  # fmt: skip
    print("| --- | --- | --- | --- |")
    first = None
    for weight in args.weights:
        val = ndcg(weight, [42, 43, 44], "val", args.overrides)
        test = ndcg(weight, [1, 2, 3, 4, 5], "test", args.overrides)
        first = test if first is None else first
        change = " ".join(f"{d:+.4f}" for d in test - first)
        print(f"| {weight:g} | {val.mean():.4f} | {test.mean():.4f} | {change} |", flush=True)


if __name__ == "__main__":
    with one_line_errors():
        main()
