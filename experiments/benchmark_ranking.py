"""Full-catalogue ranking against its physical floor, on an ML-20M-sized catalogue.

    python experiments/benchmark_ranking.py [--users 20000] [--items 27000] [--dim 64]
                                            [--seen 145] [--k 20] [--batch 1024]

Random factors (float32) and a random ``seen`` matrix (about ``--seen`` items per user) stand
in for a fitted model. Prints, side by side, the blocked matmul alone (``U[block] @ V.T``, the
floor: no ranking can be cheaper) and ``Recommender.recommend(users, k, exclude=seen)`` (score,
mask, top-k), each the best of three, and their ratio.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from recsys.cli import ArgumentParser, one_line_errors, positive_int
from recsys.models.base import FactorRecommender


class RandomFactors(FactorRecommender):
    def __init__(self, users: np.ndarray, items: np.ndarray):
        self._user_vectors, self._item_vectors = users, items
        self.n_users, self.n_items = len(users), len(items)

    def fit(self, train):
        return self


def best_of(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = ArgumentParser("experiments/benchmark_ranking.py", description=__doc__)
    parser.add_argument("--users", type=positive_int, default=20_000)
    parser.add_argument("--items", type=positive_int, default=27_000)
    parser.add_argument("--dim", type=positive_int, default=64)
    parser.add_argument("--seen", type=int, default=145)
    parser.add_argument("--k", type=positive_int, default=20)
    parser.add_argument("--batch", type=positive_int, default=1024)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    users = rng.standard_normal((args.users, args.dim), dtype=np.float32)
    items = rng.standard_normal((args.items, args.dim), dtype=np.float32)
    seen = sp.random(args.users, args.items, density=args.seen / args.items, format="csr",
                     random_state=0, dtype=np.float32)  # fmt: skip
    model = RandomFactors(users, items)
    everyone = np.arange(args.users)
    model.recommend(everyone[:2], args.k, exclude=seen[:2])  # imports and first-call costs

    def matmul():
        for start in range(0, args.users, args.batch):
            users[start : start + args.batch] @ items.T

    floor = best_of(matmul)
    ranking = best_of(lambda: model.recommend(everyone, args.k, exclude=seen,
                                              batch_size=args.batch))  # fmt: skip
    print(f"{args.users} users x {args.items} items, {args.dim}-d, ~{seen.nnz / args.users:.0f} "
          f"seen per user, K={args.k}, blocks of {args.batch}")
    print(f"blocked matmul (floor)     {floor:7.2f} s")
    print(f"recommend (score+mask+top-k) {ranking:5.2f} s   {ranking / floor:.2f}x the floor")


if __name__ == "__main__":
    with one_line_errors():
        main()
