"""How much of a torch model's best validation value a refit can expect to get back.

    python experiments/refit_stability.py --model graphsage --ema 0 0.99 [--seeds 42 43 44]

With refit (the ``msr`` protocol), a torch model is trained again on train + validation for the
best epoch's number of epochs, without validation to pick the epoch. What it gets is a draw from
its curve near that epoch, not the curve's maximum: a curve that oscillates from epoch to epoch
reaches a high maximum by luck, which the refit does not repeat. For every setting of
``model.trainer.ema`` and validation split seed, this trains the model with early stopping on
the training part of the protocol and prints, from the validation curve (NDCG@10 every epoch):
its maximum (what a study ranks by), the mean over the epochs within ``--window`` of the best
one (what a refit for that many epochs can expect), and the mean absolute change from one epoch
to the next. Test is never evaluated.
"""

from __future__ import annotations

import numpy as np

from recsys.cli import ArgumentParser, one_line_errors, positive_int, split_seed
from recsys.config import build_model, compose_config, load_split
from recsys.rng import seed_everything
from recsys.train import validation_metric


def validation_curve(model_name: str, ema: float, seed: int, data_dir: str | None) -> list[float]:
    """Validation NDCG@10 of every epoch of one early-stopped training run."""
    where = [f"data.dir={data_dir}"] if data_dir else []
    cfg = compose_config([f"model={model_name}", f"seed={seed}", *where,
                          f"model.trainer.ema={ema}", "model.trainer.progress=false"])  # fmt: skip
    prepared = load_split(cfg)
    train, validation = prepared.split.train.to_csr(), prepared.split.validation.to_csr()
    seed_everything(seed)
    model = build_model(cfg.model, seed, prepared.data)
    curve = []
    model.fit_validated(train, validate=validation_metric(validation, train, cfg.objective,
                                                          cfg.eval_batch_size),
                        on_epoch=lambda epoch, record: curve.append(record["val"]))  # fmt: skip
    return curve


def curve_summary(curve: list[float], window: int) -> dict[str, float]:
    values = np.asarray(curve)
    best = int(np.argmax(values))
    near = values[max(best - window, 0) : best + window + 1]
    return {"best epoch": best + 1, "max": values[best], "near best": near.mean(),
            "epoch-to-epoch": np.abs(np.diff(values)).mean()}  # fmt: skip


def main() -> None:
    parser = ArgumentParser("experiments/refit_stability.py", description=__doc__)
    parser.add_argument("--model", default="graphsage")
    parser.add_argument("--ema", type=float, nargs="+", default=[0.0, 0.99])
    parser.add_argument("--seeds", type=split_seed, nargs="+", default=[42, 43, 44])
    parser.add_argument("--window", type=positive_int, default=5)
    parser.add_argument("--data-dir", default=None,
                        help="the data folder (default: data.dir: $RECSYS_DATA_DIR, else "
                             "~/.cache/recsys/data)")
    args = parser.parse_args()
    if "trainer" not in compose_config([f"model={args.model}"]).model:
        parser.error(f"--model {args.model} has no epochs (no trainer): name a torch model, e.g. "
                     f"graphsage")  # fmt: skip
    print(f"{args.model}: validation NDCG@10 curves (near best: epochs within {args.window})")
    print("| ema | seed | best epoch | max | near best | epoch-to-epoch |")
    print("| --- | --- | --- | --- | --- | --- |")
    means = {}
    for ema in args.ema:
        rows = [curve_summary(validation_curve(args.model, ema, seed, args.data_dir), args.window)
                for seed in args.seeds]  # fmt: skip
        for seed, row in zip(args.seeds, rows, strict=True):
            print(f"| {ema} | {seed} | {row['best epoch']} | {row['max']:.4f} | "
                  f"{row['near best']:.4f} | {row['epoch-to-epoch']:.4f} |", flush=True)
        means[ema] = {key: np.mean([row[key] for row in rows]) for key in rows[0]}
    for ema, mean in means.items():
        print(f"| {ema} | mean | {mean['best epoch']:.0f} | {mean['max']:.4f} | "
              f"{mean['near best']:.4f} | {mean['epoch-to-epoch']:.4f} |")


if __name__ == "__main__":
    with one_line_errors():
        main()
