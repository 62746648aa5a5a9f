"""The ensemble's weights: mean validation NDCG@10 of every point of the weight grid, over split
seeds that no study has seen.

    python experiments/ensemble_weights.py [--seeds 100 101 102 103 104] [--step 0.05]
        [--top 10] [--test] [-- OVERRIDE ...]

For each split seed the ensemble of conf/model/ensemble.yaml fits its members once on the
training part (iterative members early-stop on the validation part, as in a run); then every
point of the simplex grid is scored on that seed's validation part. Printed: the grid points
with the best mean over the seeds, each member alone, and equal weights.

Why other seeds than a run's own validation (``model.weights=null``): one split's validation
(about 8 items a user) picks weights that swing from seed to seed, and the grid's best point
is the maximum of noisy values. Why not the studies' seeds 42-44: the members' defaults were
tuned on their validation parts, so those favour the member whose study fitted them most. The
default seeds 100-104 are seen by no study and by no benchmark run.

``--test``: the same grid on the ``msr`` test part of seeds 1-5 (members refit on train +
validation, as the protocol says). This tunes on test: it is a ceiling of what any weights of
these members reach, for the discussion, never a default.
"""

from __future__ import annotations

import numpy as np

from recsys.cli import ArgumentParser, one_line_errors, positive_int, split_seed
from recsys.config import compose_config, load_split
from recsys.metrics import evaluate
from recsys.models.ensemble import simplex_grid
from recsys.train import fit_selected, model_factory, validation_metric


def grid_values(seed: int, test: bool, step: float, overrides: list[str]):
    """``(member names, weight points, (n_points,) NDCG@10)`` of one split seed: validation
    of the members fitted on train, or (``test``) test of their refit on train + validation.
    The first point is equal weights."""
    cfg = compose_config(["model=ensemble", f"seed={seed}", "tracking.enabled=false",
                          "cache.enabled=false", *overrides])  # fmt: skip
    prepared = load_split(cfg)
    split = prepared.split
    fresh = model_factory(cfg, prepared.data)
    model = fresh()
    names = list(model.members)
    grid = simplex_grid(len(names), step)
    equal = np.full(len(names), 1 / len(names))
    if not np.allclose(grid[0], equal):  # 3 members at step 0.05: 1/3 is off the grid
        grid.insert(0, equal)
    model.weights = grid[0]  # fixed: the members fit once, the grid is scored below
    train, validation = split.train.to_csr(), split.validation.to_csr()
    if test:
        refit = fresh if cfg.protocol.refit else None
        final = fit_selected(model, split, cfg.eval_batch_size, cfg.objective, refit=refit).final
        truth, seen = split.test.to_csr(), train + validation

        def value(ensemble):
            return evaluate(ensemble, truth, seen, [10], batch_size=cfg.eval_batch_size
                            ).summary["ndcg@10"]  # fmt: skip
    else:
        final = model.fit_validated(train, validate=validation_metric(
            validation, train, cfg.objective, cfg.eval_batch_size))  # members early-stop
        value = validation_metric(validation, train, "val/ndcg@10", cfg.eval_batch_size)
    values = []
    for weights in grid:
        final.weights = weights
        values.append(value(final))
    return names, grid, np.array(values)


def main() -> None:
    parser = ArgumentParser("experiments/ensemble_weights.py", description=__doc__)
    parser.add_argument("--seeds", type=split_seed, nargs="+", default=None,
                        help="split seeds (default: 100-104; with --test 1-5)")  # fmt: skip
    parser.add_argument("--step", type=float, default=0.05)
    parser.add_argument("--top", type=positive_int, default=10)
    parser.add_argument("--test", action="store_true", help="score the grid on test (a ceiling)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_args()
    if not 0 < args.step <= 1 or abs(round(1 / args.step) * args.step - 1) > 1e-9:
        parser.error(f"--step must divide 1 (0.05, 0.1, 0.25...), got {args.step}")
    seeds = args.seeds or ([1, 2, 3, 4, 5] if args.test else [100, 101, 102, 103, 104])
    per_seed = []
    for seed in seeds:
        names, grid, values = grid_values(seed, args.test, args.step, args.overrides)
        per_seed.append(values)
        print(f"seed {seed}: best {values.max():.4f} at {_weights(names, grid[values.argmax()])}",
              flush=True)  # fmt: skip
    table = np.column_stack(per_seed)  # (n_points, n_seeds)
    mean = table.mean(axis=1)
    part = "test" if args.test else "validation"
    print(f"\n| weights | mean {part} NDCG@10 | per seed ({', '.join(map(str, seeds))}) |")
    print("| --- | --- | --- |")
    alone = [i for i, w in enumerate(grid) if w.max() == 1]
    best = list(np.argsort(-mean, kind="stable")[: args.top])
    for i in best + [i for i in [0, *alone] if i not in best]:  # 0: equal weights
        row = " ".join(f"{v:.4f}" for v in table[i])
        print(f"| {_weights(names, grid[i])} | {mean[i]:.4f} | {row} |")


def _weights(names: list[str], weights: np.ndarray) -> str:
    return ", ".join(f"{name} {w:.2f}" for name, w in zip(names, weights, strict=True))


if __name__ == "__main__":
    with one_line_errors():
        main()
