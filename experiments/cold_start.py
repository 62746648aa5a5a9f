"""Cold start: recommendations of the default two-tower for users known only by their features.

    python experiments/cold_start.py [--data-dir data]

Trains the default two-tower on the default split, then scores every user as if unseen (ID set
to "unknown", features only) and prints the mean overlap of their top-10 with the popular
top-10, how many distinct top-10 lists there are, and the test NDCG@10 of these feature-only
rankings next to the warm model's and the popular list's.
"""

from __future__ import annotations

import argparse

import numpy as np

from recsys.config import build_model, compose_config, create_model, load_split
from recsys.data.features import item_features, user_features
from recsys.metrics import ranking_metrics
from recsys.models.base import mask_excluded, top_k
from recsys.train import validation_metric


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args()
    cfg = compose_config(["model=two_tower", f"data.dir={args.data_dir}",
                          "model.trainer.progress=false"])  # fmt: skip
    prepared = load_split(cfg)
    data, split = prepared.data, prepared.split
    train, validation, test = (split.train.to_csr(), split.validation.to_csr(),
                               split.test.to_csr())  # fmt: skip
    users_f, items_f = user_features(data.users), item_features(data.items)
    model = build_model(cfg.model, cfg.seed, user_features=users_f, item_features=items_f)
    model.fit(train, validate=validation_metric(validation, train, cfg.objective, 1024))

    users = np.arange(train.shape[0])
    seen = train + validation
    rankings = {}
    cold = model.score_new_users(users_f)  # (n_users, n_items), features only
    warm = model.score(users)
    popular = create_model("popular", seed=cfg.seed).fit(train).score(users).astype(np.float32)
    for name, scores in (("two-tower, features only", cold), ("two-tower, warm", warm),
                         ("popular", popular)):  # fmt: skip
        scores = np.array(scores, dtype=np.float32)
        mask_excluded(scores, seen)
        rankings[name] = top_k(scores, 10)[0]
    popular_top = set(np.argsort(-popular[0], kind="stable")[:10].tolist())
    cold_top = top_k(np.array(cold, dtype=np.float32), 10)[0]  # nothing excluded
    overlap = np.mean([len(set(row) & popular_top) / 10 for row in cold_top.tolist()])
    print(f"cold-start top-10 vs popular top-10 (no filtering): mean overlap {overlap:.3f}, "
          f"{len({tuple(r) for r in cold_top.tolist()})} distinct lists for {len(users)} users")
    has_test = np.diff(test.indptr) > 0
    for name, ranking in rankings.items():
        ndcg = ranking_metrics(ranking[has_test], test[has_test], [10])["ndcg@10"].mean()
        print(f"test NDCG@10 {name:<26} {ndcg:.4f}")


if __name__ == "__main__":
    main()
