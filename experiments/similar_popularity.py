"""How much the demo's similar films are just popular films: the cosine between item vectors
(the old ``similar_items``) against shrunk co-rating PMI (the new default), on a bundle.

    python experiments/similar_popularity.py [--bundle data/bundles/ml-100k] [--k 10] [--top 20]
        [--shrinkage 40] [--films "Fargo (1996)" ...] [--sweep 10 20 40 100]

For each film, the popularity rank (1: the most-rated film of the bundle, over every rating) of
each of its ``k`` neighbours and how many of them are among the ``top`` most-rated films, by
each similarity, as a Markdown table. ``--sweep`` adds, for each shrinkage given, the same
count averaged over the 100 most-rated films' neighbours, their median popularity rank, and the
share of neighbours that share a genre with the film (a check that they stay sensible, which
no popularity figure shows): what the default shrinkage was chosen by.
"""

from __future__ import annotations

import argparse

import numpy as np

from recsys.cli import ArgumentParser, one_line_errors, positive_int
from recsys.demo import PMI_SHRINKAGE, BundleRecommender, neighbour_popularity_ranks

FILMS = ["Fargo (1996)", "Toy Story (1995)", "Star Wars (1977)", "Pulp Fiction (1994)",
         "Godfather, The (1972)"]  # fmt: skip


def neighbours_table(demo: BundleRecommender, films: list[str], k: int, top: int,
                     shrinkage: float) -> list[str]:  # fmt: skip
    """Markdown rows: each film's neighbours' popularity ranks by cosine and by PMI."""
    rows = [f"| film | cosine: popularity ranks | in top {top} | PMI: popularity ranks "
            f"| in top {top} |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
    totals = {"cosine": 0, "pmi": 0}
    for film in films:
        cells = [demo.title(film)]
        for similarity in ("cosine", "pmi"):
            ranks = neighbour_popularity_ranks(demo, film, k, similarity, shrinkage)
            totals[similarity] += int((ranks <= top).sum())
            cells += [" ".join(map(str, ranks)), str(int((ranks <= top).sum()))]
        rows.append("| " + " | ".join(cells) + " |")
    rows.append(f"| all {len(films)} | | {totals['cosine']} of {k * len(films)} | "
                f"| {totals['pmi']} of {k * len(films)} |")  # fmt: skip
    return rows


def sweep_table(demo: BundleRecommender, shrinkages: list[float], k: int, top: int,
                n_films: int = 100) -> list[str]:  # fmt: skip
    """Markdown rows: over the ``n_films`` most-rated films, per similarity (and shrinkage),
    the mean count of neighbours among the ``top`` most-rated, their median popularity rank and
    the share of neighbours sharing a genre with the film."""
    films = demo.items["item_id"].to_numpy()[np.argsort(demo.popularity_rank, kind="stable")]
    genres = dict(zip(demo.items["item_id"], demo.items["genres"].map(set), strict=True))
    rank_of = dict(zip(demo.items["item_id"], demo.popularity_rank, strict=True))
    rows = [f"| similarity | mean in top {top} | median popularity rank | share of neighbours "
            f"sharing a genre |", "| --- | --- | --- | --- |"]  # fmt: skip
    for similarity, shrinkage in [("cosine", 0.0)] + [("pmi", s) for s in shrinkages]:
        counts, ranks, shared = [], [], []
        for film in films[:n_films].tolist():  # a measurement over films, not a hot path
            table = demo.similar_items(film, k, similarity, shrinkage)
            popularity = np.array([rank_of[m] for m in table["movie_id"]])
            counts.append((popularity <= top).sum())
            ranks.extend(popularity)
            shared.extend(bool(genres[film] & genres[m]) for m in table["movie_id"])
        name = "cosine" if similarity == "cosine" else f"PMI, shrinkage {shrinkage:g}"
        rows.append(f"| {name} | {np.mean(counts):.2f} | {np.median(ranks):.0f} | "
                    f"{np.mean(shared):.3f} |")  # fmt: skip
    return rows


def main() -> None:
    parser = ArgumentParser("experiments/similar_popularity.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="data/bundles/ml-100k")
    parser.add_argument("--k", type=positive_int, default=10, help="neighbours per film")
    parser.add_argument("--top", type=positive_int, default=20,
                        help="the most-rated films that count")
    parser.add_argument("--shrinkage", type=float, default=PMI_SHRINKAGE)
    parser.add_argument("--films", nargs="+", default=FILMS, help="titles or ids")
    parser.add_argument("--sweep", nargs="*", type=float, default=[],
                        help="shrinkages to compare over the 100 most-rated films")
    args = parser.parse_args()
    demo = BundleRecommender.load(args.bundle)
    manifest = demo.manifest
    print(f"bundle {args.bundle}: model {manifest['model']}, run {manifest['run_id'][:8]}, "
          f"{len(demo.user_ids)} users x {len(demo.items)} films, {demo.ratings.nnz} ratings; "
          f"k={args.k}, PMI shrinkage {args.shrinkage:g}\n")
    print("\n".join(neighbours_table(demo, args.films, args.k, args.top, args.shrinkage)))
    if args.sweep:
        print()
        print("\n".join(sweep_table(demo, args.sweep, args.k, args.top)))


if __name__ == "__main__":
    with one_line_errors():
        main()
