"""The chain of routes over real exported bundles (ALS, two-tower, Mult-VAE, briefly trained on
the synthetic release and tracked in a real MLflow store): each route against the same ranking
computed by hand from the bundle's arrays."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.bundle import NEW_USER_FILES, read_bundle
from recsys.demo import co_rating_pmi_rows
from recsys.errors import ConfigError, NotFoundError, RecsysError
from recsys.models.als import als_user_step
from recsys.models.multvae import VAEFoldIn
from recsys.models.two_tower import DemographicsTower
from recsys.serve.routing import Demographics, RoutedRecommender
from tests.conftest import make_ratings


@pytest.fixture(scope="module")
def routers(new_user_bundles) -> dict[str, RoutedRecommender]:
    return {model: RoutedRecommender.load(path) for model, path in new_user_bundles.items()}


def brute_force(bundle, vector: np.ndarray, exclude=(), k: int = 10) -> list[int]:
    """Movie ids of the ``k`` best inner products with ``vector``, ``exclude`` rows left out."""
    scores = bundle.item_embeddings @ vector
    scores[list(exclude)] = -np.inf
    return bundle.item_ids[np.argsort(-scores, kind="stable")[:k]].tolist()


def test_a_known_user_is_served_by_the_model(routers):
    router = routers["als"]
    answer = router.recommend(user_id=7, k=5)
    assert answer.route == "known-user" and answer.note is None and "als" in answer.method
    pd.testing.assert_frame_equal(answer.table.drop(columns=["because_id", "because_title"]),
                                  router.demo.recommend(7, k=5))  # fmt: skip
    assert answer.table["because_id"].isna().all()


def test_an_unknown_user_is_not_found_with_the_ids_there_are(routers):
    with pytest.raises(NotFoundError, match="unknown user 9999") as raised:
        routers["als"].recommend(user_id=9999)
    assert raised.value.suggestions == ["MovieLens user ids here run from 1 to 120 (120 users)"]
    with pytest.raises(ConfigError, match="not both"):
        routers["als"].recommend(user_id=7, liked=[5])


@pytest.mark.parametrize("liked", ["Fargo (1996)", 5, None])
def test_liked_films_must_be_a_list_not_one_title_read_as_letters(routers, liked):
    given = re.escape(repr(liked))
    with pytest.raises(ConfigError, match=f"liked is a list of films .*got {given}"):
        routers["als"].recommend(liked=liked)


@pytest.mark.parametrize("user_id", [7.6, True])
def test_a_user_id_is_a_whole_number_not_one_rounded_down(routers, user_id):
    with pytest.raises(NotFoundError, match=f"unknown user {user_id!r}"):
        routers["als"].recommend(user_id=user_id)
    assert routers["als"].recommend(user_id="7").route == "known-user"  # from a command line


def test_liked_films_fold_in_by_als_and_each_film_says_which_liked_one_it_is_like(
        routers, new_user_bundles):  # fmt: skip
    router = routers["als"]
    answer = router.recommend(liked=["fargo", 9, "movie 13 (1963)"], k=10)
    assert answer.route == "fold-in" and answer.method.startswith("ALS's user step")
    expected = router.demo.recommend_for_new_user(["Fargo (1996)", 9, "Movie 13 (1963)"], k=10)
    assert answer.table["movie_id"].tolist() == expected["movie_id"].tolist()
    # what the ALS model itself computes for a user with these three items (cold_start's route)
    config = router.demo.manifest["model_config"]
    rows = sp.csr_matrix((np.ones(3), ([0, 0, 0], [8, 12, 99])), shape=(1, 200))
    vector = als_user_step(router.demo.item_vectors, rows, config["alpha"],
                           config["regularization"])[0]  # fmt: skip
    bundle = read_bundle(new_user_bundles["als"])
    assert answer.table["movie_id"].tolist() == brute_force(bundle, vector, [8, 12, 99])
    assert not {100, 9, 13} & set(answer.table["movie_id"])
    liked = np.array([8, 12, 99])  # rows of movies 9, 13, 100
    pmi = co_rating_pmi_rows(router.demo.ratings, liked)[:, answer.table["movie_id"] - 1]
    assert answer.table["because_id"].tolist() == (liked[pmi.argmax(axis=0)] + 1).tolist()
    titles = dict(zip(router.demo.items["item_id"], router.demo.items["title"], strict=True))
    assert answer.table["because_title"].tolist() == [titles[m] for m in answer.table.because_id]


def test_a_film_no_one_rated_together_with_the_liked_one_has_no_reason(routers):
    router = routers["als"]
    rare = int(np.argmin(router.rated_by))  # the fewest raters: not co-rated with everything
    answer = router.recommend(liked=[rare + 1], k=500)  # every other film
    assert len(answer.table) == 199
    together = np.isfinite(co_rating_pmi_rows(router.demo.ratings, np.array([rare]))[0])
    expected = together[answer.table["movie_id"] - 1]
    assert 0 < expected.sum() < len(expected)
    assert answer.table["because_id"].notna().tolist() == expected.tolist()
    assert answer.table["because_title"].notna().tolist() == expected.tolist()
    assert (answer.table["because_id"].dropna() == rare + 1).all()


def test_liked_films_fold_in_by_the_vaes_encoder_when_the_bundle_carries_it(routers,
                                                                           new_user_bundles):
    router = routers["multvae"]
    answer = router.recommend(liked=[100, 50, 3], k=10)
    assert answer.route == "fold-in" and answer.method.startswith("Mult-VAE's encoder")
    bundle = read_bundle(new_user_bundles["multvae"])
    rows = sp.csr_matrix((np.ones(3), ([0, 0, 0], [99, 49, 2])), shape=(1, 200))
    vector = VAEFoldIn(bundle.new_users).vectors(rows)[0]
    assert answer.table["movie_id"].tolist() == brute_force(bundle, vector, [99, 49, 2])
    assert answer.table["because_id"].isin([100, 50, 3]).all()


def test_a_vae_bundle_without_its_encoder_falls_back_to_ridge(new_user_bundles, tmp_path):
    old = shutil.copytree(new_user_bundles["multvae"], tmp_path / "bundle")
    manifest = json.loads((old / "manifest.json").read_text())
    for name in NEW_USER_FILES:
        del manifest["files"][name]
    (old / "manifest.json").write_text(json.dumps(manifest))  # as exported before the encoder
    answer = RoutedRecommender.load(old).recommend(liked=[100, 50, 3])
    assert answer.route == "fold-in" and answer.method.startswith("ridge regression")


def test_demographics_go_through_the_two_tower_user_tower(routers, new_user_bundles):
    router = routers["two_tower"]
    assert router.routes == ["known-user", "fold-in", "demographics", "popular"]
    person = Demographics(age=34, gender="F", occupation="engineer", zip_code="10023")
    answer = router.recommend(demographics=person, k=10)
    assert answer.route == "demographics" and "user tower" in answer.method
    bundle = read_bundle(new_user_bundles["two_tower"])
    frame = pd.DataFrame({"age": [34], "gender": ["F"], "occupation": ["engineer"],
                          "zip_code": ["10023"]})  # fmt: skip
    vector = DemographicsTower(bundle.new_users).embed(frame)[0]
    assert answer.table["movie_id"].tolist() == brute_force(bundle, vector)
    others = [router.recommend(demographics=Demographics(age, gender, job))
              for age, gender, job in ((17, "M", "student"), (60, "F", None), (40, None, None))]
    assert len({tuple(a.table["movie_id"]) for a in [answer, *others]}) > 1
    assert all(a.route == "demographics" for a in others)


def test_liked_films_come_before_demographics(routers):
    answer = routers["two_tower"].recommend(liked=[100], demographics=Demographics(age=30))
    assert answer.route == "fold-in"


@pytest.mark.parametrize("person, message", [
    (Demographics(age=0), "age must be a whole number of years from 1 to 120, got 0"),
    (Demographics(age=30, gender="X"), "gender 'X' is not one the model knows: use one of F, M"),
    (Demographics(age=30, occupation="astronaut"),
     "occupation 'astronaut' is not one the model knows: use one of artist, doctor, engineer, "
     "other, student, or leave it out"),
    (Demographics(age=30, zip_code="1" * 11), "zip_code must be text of at most 10"),
])  # fmt: skip
def test_demographics_the_model_cannot_read_name_the_field_and_the_choices(routers, person,
                                                                          message):  # fmt: skip
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        routers["two_tower"].recommend(demographics=person)


def test_nobody_in_particular_gets_the_most_rated_films(routers):
    answer = routers["als"].recommend(k=7)
    counts = make_ratings().groupby("item_id").size()
    expected = counts.sort_values(ascending=False, kind="stable").index[:7].tolist()
    assert answer.route == "popular" and answer.note is None
    assert answer.table["movie_id"].tolist() == expected  # ties: the lower id first
    assert answer.table["score"].tolist() == counts.loc[expected].astype(float).tolist()


def test_demographics_without_a_user_tower_get_the_popular_list_and_say_why(routers):
    answer = routers["als"].recommend(demographics=Demographics(age=30), k=5)
    assert answer.route == "popular" and "routes" not in answer.note
    assert answer.note.startswith("demographics need a two-tower bundle (this one is als's)")
    assert routers["als"].routes == ["known-user", "fold-in", "popular"]


def test_bad_k_and_unknown_films_are_one_line_errors(routers):
    for k in (0, -1, 2.5, True):
        with pytest.raises(RecsysError, match="k must be a positive whole number"):
            routers["als"].recommend(k=k)
    with pytest.raises(NotFoundError, match="did you mean: .*Movie 5 \\(1955\\)") as raised:
        routers["als"].recommend(liked=["Movie 5 (1956)"])
    assert "Movie 5 (1955)" in raised.value.suggestions
    with pytest.raises(NotFoundError, match="unknown movie id 5000: ids run from 1 to 200"):
        routers["als"].recommend(liked=[5000])


def test_search_finds_titles_the_most_rated_first(routers):
    router = routers["als"]
    titles = router.demo.items["title"].to_numpy()
    rows, raters = router.search("  FARGO ")
    assert titles[rows].tolist() == ["Fargo (1996)"] and raters[0] == router.rated_by[rows[0]]
    rows, raters = router.search("movie 1", limit=5)
    assert len(rows) == 5 and all("movie 1" in t.lower() for t in titles[rows])
    assert (np.diff(raters) <= 0).all()
    assert len(router.search("no such film")[0]) == 0
    np.testing.assert_array_equal(router.search("")[0], router.popular(20).rows)
