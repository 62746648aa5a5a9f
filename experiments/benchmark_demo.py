"""Latency of the demo: ``recommend()`` over many single-user queries, and batched throughput.

    python experiments/benchmark_demo.py [--bundle data/bundles/ml-100k] [--queries 10000]

Prints p50/p90/p99 of one ``recommend(user, k=10)`` call (FAISS search, seen-movie filtering
and the result table), of the bare vector search, and users per second of ``recommend_many``
for all users at once.
"""

from __future__ import annotations

import time

import numpy as np

from recsys.cli import ArgumentParser, one_line_errors, positive_int
from recsys.demo import BundleRecommender


def percentiles(seconds: list[float]) -> str:
    p50, p90, p99 = np.percentile(np.array(seconds) * 1e3, [50, 90, 99])
    return f"p50 {p50:.3f} ms   p90 {p90:.3f} ms   p99 {p99:.3f} ms"


def main() -> None:
    parser = ArgumentParser("experiments/benchmark_demo.py", description=__doc__)
    parser.add_argument("--bundle", default="data/bundles/ml-100k")
    parser.add_argument("--queries", type=positive_int, default=10_000)
    args = parser.parse_args()
    demo = BundleRecommender.load(args.bundle)
    users = np.random.default_rng(0).choice(demo.user_ids, size=args.queries)
    demo.recommend(int(users[0]))  # warm up

    table_seconds, search_seconds = [], []
    for user in users.tolist():  # a benchmark of single queries: one call per query
        start = time.perf_counter()
        demo.recommend(user, k=10)
        table_seconds.append(time.perf_counter() - start)
    vectors = demo.user_vectors
    for user in users.tolist():
        start = time.perf_counter()
        row = demo.user_index(user)
        demo.index.search(vectors[row : row + 1], 10)
        search_seconds.append(time.perf_counter() - start)
    start = time.perf_counter()
    demo.recommend_many(demo.user_ids, k=10)
    batch = time.perf_counter() - start

    print(f"bundle {args.bundle}: model {demo.manifest['model']}, "
          f"{len(demo.user_ids)} users x {len(demo.items)} items, "
          f"{demo.manifest['index']['kind']} index, {args.queries} queries")
    print(f"recommend(user, k=10)     {percentiles(table_seconds)}")
    print(f"index.search only         {percentiles(search_seconds)}")
    print(f"recommend_many(all users) {batch * 1e3:.1f} ms, "
          f"{len(demo.user_ids) / batch:,.0f} users/s")


if __name__ == "__main__":
    with one_line_errors():
        main()
