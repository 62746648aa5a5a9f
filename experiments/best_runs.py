"""List an MLflow experiment's runs ranked by a validation metric.

    python experiments/best_runs.py ml-100k-als-search [--metric val/ndcg@10] [--top 10]
"""

from __future__ import annotations

from recsys.cli import ArgumentParser, one_line_errors, positive_int
from recsys.errors import ConfigError
from recsys.tracking import mlflow_key, open_client


def main() -> None:
    parser = ArgumentParser("experiments/best_runs.py", description=__doc__)
    parser.add_argument("experiment")
    parser.add_argument("--metric", default="val/ndcg@10")
    parser.add_argument("--top", type=positive_int, default=10)
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args()
    client = open_client(args.tracking_uri, option="--tracking-uri")  # creates no mlflow.db
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise ConfigError(f"no experiment {args.experiment!r} in {client.tracking_uri}")
    key = mlflow_key(args.metric)
    runs = client.search_runs([experiment.experiment_id], order_by=[f"metrics.`{key}` DESC"],
                              max_results=args.top)  # fmt: skip
    if runs and key not in runs[0].data.metrics:  # ordered by a metric no run logged
        raise ConfigError(f"--metric {args.metric}: no run of {args.experiment!r} logged it")
    print(f"{'run':<34}{args.metric:>14}{'test/ndcg@10':>14}  model params")
    for found in runs:
        params = {k.removeprefix("model."): v for k, v in found.data.params.items()
                  if k.startswith("model.") and k != "model._target_"}  # fmt: skip
        print(f"{found.info.run_name:<34}{found.data.metrics.get(key, float('nan')):>14.4f}"
              f"{found.data.metrics.get('test/ndcg_at_10', float('nan')):>14.4f}  {params}")


if __name__ == "__main__":
    with one_line_errors():
        main()
