"""List an MLflow experiment's runs ranked by a validation metric.

    python experiments/best_runs.py ml-100k-als-search [--metric val/ndcg@10] [--top 10]
"""

from __future__ import annotations

import argparse

from mlflow.tracking import MlflowClient

from recsys.tracking import mlflow_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("experiment")
    parser.add_argument("--metric", default="val/ndcg@10")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args()
    client = MlflowClient(args.tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"error: no experiment {args.experiment!r} in {client.tracking_uri}")
    key = mlflow_key(args.metric)
    runs = client.search_runs([experiment.experiment_id], order_by=[f"metrics.`{key}` DESC"],
                              max_results=args.top)  # fmt: skip
    print(f"{'run':<34}{args.metric:>14}{'test/ndcg@10':>14}  model params")
    for found in runs:
        params = {k.removeprefix("model."): v for k, v in found.data.params.items()
                  if k.startswith("model.") and k != "model._target_"}  # fmt: skip
        print(f"{found.info.run_name:<34}{found.data.metrics.get(key, float('nan')):>14.4f}"
              f"{found.data.metrics.get('test/ndcg_at_10', float('nan')):>14.4f}  {params}")


if __name__ == "__main__":
    main()
