"""The demo's similarity and popularity measures on examples small enough to check by hand
(the demo over a real exported bundle: ``test_export.py``)."""

import math

import faiss
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import bundle
from recsys.demo import BundleRecommender, co_rating_pmi, format_table, popularity_ranks
from recsys.errors import NotFoundError, RecsysError


def rated_by(raters: dict[int, list[int]], n_users: int) -> sp.csr_matrix:
    """``(n_users, n_items)`` matrix with ``raters[item]`` the users who rated ``item``."""
    users = [u for item in sorted(raters) for u in raters[item]]
    items = [item for item in sorted(raters) for _ in raters[item]]
    return sp.csr_matrix((np.full(len(users), 4.0), (users, items)),
                         shape=(n_users, len(raters)))  # fmt: skip


def test_pmi_prefers_the_niche_film_to_the_hit_that_everyone_rated():
    # 6 users. Item 0, a hit: everyone. Item 1: users 0-2. Item 2: users 0-1. Item 3: user 5.
    ratings = rated_by({0: [0, 1, 2, 3, 4, 5], 1: [0, 1, 2], 2: [0, 1], 3: [5]}, 6)
    scores = co_rating_pmi(ratings, 1, shrinkage=0)
    # the hit shares more raters with item 1 (3 against 2) but no more than chance would:
    # PMI(1, 0) = log(3 * 6 / (3 * 6)) = 0; PMI(1, 2) = log(2 * 6 / (3 * 2)) = log 2
    np.testing.assert_allclose(scores, [0.0, math.log(6 / 3), math.log(2), -np.inf])
    shrunk = co_rating_pmi(ratings, 1, shrinkage=1)  # x c / (c + 1): 3/4 and 2/3
    np.testing.assert_allclose(shrunk, [0.0, math.log(2) * 3 / 4, math.log(2) * 2 / 3, -np.inf])


def test_shrinkage_discounts_a_pair_that_one_user_rated_together():
    # 20 users. A: users 0-9. B: user 0 alone. C: users 0-7 and 10-11. D: users 10-19.
    ratings = rated_by({0: list(range(10)), 1: [0], 2: [*range(8), 10, 11],
                        3: list(range(10, 20))}, 20)  # fmt: skip
    raw = co_rating_pmi(ratings, 0, shrinkage=0)
    assert raw[1] == pytest.approx(math.log(1 * 20 / (10 * 1)))  # one co-rater: log 2
    assert raw[2] == pytest.approx(math.log(8 * 20 / (10 * 10)))  # eight: log 1.6
    assert raw[3] == -np.inf and raw[1] > raw[2]
    shrunk = co_rating_pmi(ratings, 0, shrinkage=10)
    assert shrunk[1] == pytest.approx(math.log(2) / 11)
    assert shrunk[2] == pytest.approx(math.log(1.6) * 8 / 18) and shrunk[2] > shrunk[1]


def test_pmi_counts_raters_not_stars_and_a_film_nobody_rated_has_no_neighbours():
    ratings = rated_by({0: [0, 1], 1: [0, 1], 2: [], 3: [2]}, 3)
    ratings.data[:] = [5.0, 1.0, 2.0, 3.0, 1.0]  # whatever the stars
    pmi = math.log(2 * 3 / (2 * 2))
    np.testing.assert_allclose(co_rating_pmi(ratings, 0, 0), [pmi, pmi, -np.inf, -np.inf])
    assert np.isneginf(co_rating_pmi(ratings, 2)).all()
    with pytest.raises(RecsysError, match="shrinkage must be a number >= 0, got -1"):
        co_rating_pmi(ratings, 0, shrinkage=-1)


def test_popularity_ranks_share_the_best_rank_on_ties():
    np.testing.assert_array_equal(popularity_ranks([7, 9, 3, 7]), [2, 1, 4, 2])
    np.testing.assert_array_equal(popularity_ranks([0, 0]), [1, 1])


def test_format_table_aligns_text_left_and_numbers_right_in_under_80_columns():
    table = pd.DataFrame({"rank": [1, 2], "movie_id": [7, 1234],
                          "title": ["A Very Long Title " * 5 + "(1999)", "Short (1999)"],
                          "year": pd.array([1999, 1999], "Int64"),
                          "genres": ["Action|Adventure|Comedy|Drama|Sci-Fi|War", "Drama"],
                          "score": [1.23456, -0.5]})  # fmt: skip
    lines = format_table(table)
    assert max(map(len, lines)) == 79
    header, long, short = lines
    assert header.split() == ["rank", "id", "title", "genres", "score"]
    assert long.startswith("   1     7  A Very Long Title") and long.endswith("Co…   1.235")
    assert short.startswith("   2  1234  Short (1999)  ") and short.endswith(" -0.500")
    title_at, genres_at = header.index("title"), header.index("genres")
    assert long.index("A Very") == short.index("Short") == title_at
    assert short.index("Drama") == genres_at and long[:genres_at].rstrip().endswith("Title…")
    assert "1999" not in header and short.count("1999") == 1  # the year only in the title


def test_format_table_of_ratings_has_no_rank_and_an_empty_table_no_lines():
    table = pd.DataFrame({"movie_id": [3], "title": ["Kolya (1996)"], "year": [1996],
                          "genres": ["Comedy"], "rating": [3.0]})  # fmt: skip
    assert format_table(table, value="rating") == ["id  title         genres  rating",
                                                   " 3  Kolya (1996)  Comedy       3"]
    assert format_table(table.iloc[:0], value="rating") == []


# the last film twice: MovieLens lists some films under two ids
TITLES = ["Heat (1995)", "Heathers (1989)", "Shining, The (1980)", "Hamlet (1990)",
          "Hamlet (1996)", "Fargo (1996)", "Ice Storm, The (1997)",
          "Ice Storm, The (1997)"]  # fmt: skip


@pytest.fixture(scope="module")
def titled(tmp_path_factory):
    """A bundle of six films under the titles above (no training: random vectors)."""
    n_items, n_users = len(TITLES), 2
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n_items, 4)).astype(np.float32)
    index = faiss.IndexFlatIP(4)
    index.add(vectors)
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1), "title": TITLES,
                          "year": pd.array([int(t[-5:-1]) for t in TITLES], "Int64"),
                          "genres": [["Drama"]] * n_items})  # fmt: skip
    seen = sp.csr_matrix(([1.0], ([0], [0])), shape=(n_users, n_items), dtype=np.float32)
    contents = bundle.Bundle(index=index, items=items, seen=seen, ratings=seen,
                             user_embeddings=rng.normal(size=(n_users, 4)).astype(np.float32),
                             item_embeddings=vectors, user_ids=np.arange(1, n_users + 1),
                             item_ids=np.arange(1, n_items + 1),
                             manifest={"run_id": "0123456789abcdef", "model": "als"})  # fmt: skip
    out = tmp_path_factory.mktemp("titled") / "bundle"
    bundle.write_bundle(out, contents)
    return BundleRecommender.load(out)


@pytest.mark.parametrize(("said", "title"), [
    ("Heat", "Heat (1995)"),  # a title that starts another (Heathers) is still itself
    ("  heat  (1995) ", "Heat (1995)"), ("The Shining", "Shining, The (1980)"),
    ("shining, the", "Shining, The (1980)"), ("the shining (1980)", "Shining, The (1980)"),
    ("Heathe", "Heathers (1989)"), ("Farg", "Fargo (1996)"), ("6", "Fargo (1996)"),
    ("The Ice Storm", "Ice Storm, The (1997)"), ("the ice storm (1997)", "Ice Storm, The (1997)"),
])  # fmt: skip
def test_a_film_is_found_by_its_title_as_people_say_it(titled, said, title):
    row = titled.movie_row(said)
    assert TITLES[row] == title
    assert row == titled.movie_row(title)  # a film listed twice: the row its full title gives


@pytest.mark.parametrize(("said", "message"), [
    ("Hamlet", "2 films are called 'Hamlet': Hamlet (1990); Hamlet (1996): give the year too"),
    ("Heat (1994)", "unknown movie 'Heat (1994)'; did you mean: Heat (1995)"),  # its year
    ("Hea", "unknown movie 'Hea'; did you mean: Heat (1995); Heathers (1989)"),
])  # fmt: skip
def test_a_title_that_names_no_film_or_two_says_which(titled, said, message):
    with pytest.raises(NotFoundError) as raised:
        titled.movie_row(said)
    assert str(raised.value).startswith(message)
