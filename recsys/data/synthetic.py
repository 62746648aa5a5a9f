"""MovieLens-shaped random data, sized at will, for scale tests: ``data=synthetic``.

The shape follows what makes MovieLens hard to scale: item popularity falls as a power law
(a few blockbusters, a long tail), user activity is log-normal (most users rate a few dozen
films, some thousands), every user rates at least ``min_user_interactions`` films, no pair
repeats, and ratings and timestamps look like MovieLens's. A little taste structure (each
user leans to one genre) gives models something to learn; the numbers they reach on it mean
nothing for MovieLens: this data measures time and memory, not quality.

Generation is vectorised (a few passes over ``interactions``-long arrays, no loop over users)
and seeded by ``data.seed`` alone, so the same sizes and seed give the same rows, and the same
``ratings_sha256``, on any machine with the same numpy.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from recsys.data.movielens import MovieLens
from recsys.errors import ConfigError

NAME = "synthetic"
GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
          "Thriller", "War", "Western")  # fmt: skip
RATING_SHARES = (0.06, 0.11, 0.27, 0.34, 0.22)  # ML-100K's shares of 1..5 stars
FIRST_TIMESTAMP = 874_724_710  # ML-100K's first rating (1997-09-20)
SECONDS_PER_YEAR = 365 * 24 * 3600


def synthetic_movielens(
    users: int,
    items: int,
    interactions: int,
    seed: int = 0,
    *,
    popularity_exponent: float = 1.0,
    activity_sigma: float = 1.0,
    min_user_interactions: int = 20,
    taste: float = 0.5,
) -> MovieLens:
    """A ``MovieLens`` of random ratings with MovieLens's shape.

    Parameters
    ----------
    users, items, interactions
        Sizes: ``interactions`` distinct (user, item) pairs over ``users`` and ``items`` ids
        (``1..users``, ``1..items``). At most half of all pairs.
    seed
        The data's own seed (a run's ``seed`` still seeds its split and model).
    popularity_exponent
        ``a`` in ``P(item of popularity rank r) ∝ (r + 10)^-a``.
    activity_sigma
        The log-normal's sigma for each user's number of interactions.
    min_user_interactions
        Every user's least number of interactions (MovieLens: 20), lowered where the sizes
        cannot afford it.
    taste
        Share of a user's interactions drawn from their favourite genre's films.
    """
    _check_sizes(users, items, interactions)
    rng = np.random.default_rng(seed)
    counts = _user_counts(rng, users, items, interactions, activity_sigma, min_user_interactions)
    genre = rng.integers(len(GENRES), size=items)  # (items,) each film's genre
    popularity = (np.arange(items) + 10.0) ** -popularity_exponent
    popularity = popularity[rng.permutation(items)]  # no link between id and popularity
    favourite = rng.integers(len(GENRES), size=users)  # (users,)
    user = np.repeat(np.arange(users, dtype=np.int64), counts)  # sorted by user
    item = _distinct_items(rng, user, counts, items, genre, popularity, favourite, taste)
    n = len(user)
    rating = (rng.choice(5, size=n, p=RATING_SHARES) + 1).astype(np.float32)
    start = FIRST_TIMESTAMP + rng.integers(0, 20 * SECONDS_PER_YEAR, size=users)  # (users,)
    span = np.minimum(rng.exponential(SECONDS_PER_YEAR, size=users), 5 * SECONDS_PER_YEAR)
    timestamp = start[user] + (rng.random(n) * span[user]).astype(np.int64)
    ratings = pd.DataFrame({"user_id": user + 1, "item_id": item + 1, "rating": rating,
                            "timestamp": timestamp})  # fmt: skip
    films = pd.DataFrame({
        "item_id": np.arange(1, items + 1, dtype=np.int64),
        "title": [f"Synthetic film {i}" for i in range(1, items + 1)],
        "year": pd.array(rng.integers(1920, 2024, size=items), dtype="Int64"),
        "genres": [[GENRES[g]] for g in genre],
    })  # fmt: skip
    return MovieLens(
        name=NAME,
        ratings=ratings,
        users=pd.DataFrame({"user_id": np.arange(1, users + 1, dtype=np.int64)}),
        items=films,
        ratings_sha256=_sha256(ratings),
    )


def _check_sizes(users: int, items: int, interactions: int) -> None:
    for key, value, least in (("users", users, 1), ("items", items, 2),
                              ("interactions", interactions, 1)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise ConfigError(f"data.{key} must be an integer >= {least}, got {value!r}")
    if interactions < users:
        raise ConfigError(f"data.interactions={interactions:_} is fewer than data.users="
                          f"{users:_}: every user needs one; lower data.users")  # fmt: skip
    if interactions > users * (items // 2):
        raise ConfigError(f"data.interactions={interactions:_} exceeds half of the "
                          f"{users:_} x {items:_} user-item pairs ({users * (items // 2):_}): "
                          f"raise data.users or data.items")  # fmt: skip


def _user_counts(rng, users: int, items: int, interactions: int, sigma: float,
                 least: int) -> np.ndarray:  # fmt: skip
    """``(users,)`` interactions per user summing to ``interactions``: ``least`` each, the rest
    shared in proportion to log-normal weights, none above half the catalogue."""
    cap = items // 2
    least = min(least, interactions // users, cap)
    weights = rng.lognormal(0.0, sigma, size=users)
    counts = np.full(users, least, dtype=np.int64)
    left = interactions - counts.sum()
    while left > 0:  # a few rounds: the capped users' share goes to the others
        open_ = counts < cap
        share = np.where(open_, weights, 0.0)
        extra = np.floor(share / share.sum() * left).astype(np.int64)
        remainder = left - extra.sum()  # < users: one more each for the largest remainders
        if remainder:
            fractions = np.where(open_, share / share.sum() * left - extra, -1.0)
            extra[np.argsort(-fractions, kind="stable")[:remainder]] += 1
        counts = np.minimum(counts + extra, cap)
        left = interactions - counts.sum()
    return counts


def _distinct_items(rng, user, counts, items, genre, popularity, favourite, taste):
    """``(len(user),)`` item indices, distinct within each user: draws from popularity (and the
    user's favourite genre), then uniform redraws for the slots that repeated a pair."""
    by_genre = np.argsort(genre, kind="stable")  # items grouped by genre
    cdf = np.cumsum(popularity[by_genre])
    cdf /= cdf[-1]
    bounds = np.concatenate([[0.0], cdf[np.searchsorted(genre[by_genre],
                                                        np.arange(len(GENRES)), "right") - 1]])
    # a user's slot draws within [low, high) of the cdf: the favourite genre's part, or all
    low = np.zeros(len(user))
    high = np.ones(len(user))
    own = rng.random(len(user)) < taste
    low[own] = bounds[favourite[user[own]]]
    high[own] = bounds[favourite[user[own]] + 1]
    draw = low + rng.random(len(user)) * (high - low)
    item = by_genre[np.minimum(np.searchsorted(cdf, draw, "right"), items - 1)]
    rows = np.arange(len(user))  # the rows of users who may still hold a repeated pair
    for _ in range(200):  # each round keeps the first of each repeated pair, redraws the rest
        key = user[rows] * items + item[rows]  # user is sorted: a user's rows stay together
        order = np.argsort(key, kind="stable")
        repeated = np.zeros(len(rows), dtype=bool)
        repeated[order[1:]] = key[order[1:]] == key[order[:-1]]
        if not repeated.any():
            return item
        item[rows[repeated]] = rng.integers(items, size=int(repeated.sum()))
        again = np.zeros(len(counts), dtype=bool)
        again[user[rows[repeated]]] = True
        rows = rows[again[user[rows]]]
    raise RuntimeError("synthetic data: repeated pairs remain after 200 redraws")  # unreachable


def _sha256(ratings: pd.DataFrame) -> str:
    """SHA-256 of the rows' bytes (user, item, rating, timestamp columns, in order)."""
    digest = hashlib.sha256()
    for column in ("user_id", "item_id", "rating", "timestamp"):
        digest.update(np.ascontiguousarray(ratings[column].to_numpy()).tobytes())
    return digest.hexdigest()
