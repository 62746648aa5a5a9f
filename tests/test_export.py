"""Export and demo on synthetic data, with a real MLflow store and real FAISS indexes."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from recsys import bundle as bundle_module
from recsys import demo as demo_module
from recsys import export
from recsys.demo import BundleRecommender
from recsys.errors import ConfigError, RecsysError
from recsys.export import IndexSettings, build_index, export_bundle, select_run
from tests.conftest import make_ratings


def test_exact_index_equals_brute_force_top_k():
    rng = np.random.default_rng(0)
    items, users = rng.normal(size=(500, 24)).astype(np.float32), rng.normal(size=(50, 24))
    scores, found = build_index(items, IndexSettings("exact")).search(users.astype("f4"), 10)
    brute = np.argsort(-(users @ items.T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(found, brute)
    np.testing.assert_allclose(scores, np.take_along_axis(users @ items.T, brute, 1), rtol=1e-4)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_report_recall_against_exact(kind):
    rng = np.random.default_rng(1)
    items, users = rng.normal(size=(2000, 16)), rng.normal(size=(100, 16))
    index = build_index(items.astype("f4"), IndexSettings(kind))
    assert 0.3 < export.recall_against_exact(index, users, items) <= 1.0
    exact = build_index(items.astype("f4"), IndexSettings("exact"))
    assert export.recall_against_exact(exact, users, items) == 1.0


@pytest.fixture(scope="module")
def client(tracked_benchmark):
    uri, _, _ = tracked_benchmark
    return MlflowClient(uri)


def test_best_run_with_embeddings_is_selected(client):
    best = select_run(client, "bench", "val/ndcg@10", None)
    experiment = client.get_experiment_by_name("bench").experiment_id
    with_vectors = client.search_runs([experiment], "tags.has_embeddings = 'true'")
    assert {r.data.tags["model"] for r in with_vectors} == {"als"}
    assert best.info.run_id == max(with_vectors,
                                   key=lambda r: r.data.metrics["val/ndcg_at_10"]).info.run_id
    popular = client.search_runs([experiment], "tags.model = 'popular'")[0]
    with pytest.raises(ConfigError, match="no embeddings"):
        select_run(client, "bench", "val/ndcg@10", popular.info.run_id)
    with pytest.raises(ConfigError, match="no MLflow experiment"):
        select_run(client, "nope", "val/ndcg@10", None)
    with pytest.raises(ConfigError, match="--metric val/ndcg@11: no run with embeddings in "
                                          "experiment 'bench' logged it; they logged "
                                          "val/METRIC@K, METRIC one of .*ndcg.*, K one of 5, "
                                          "10, 20"):  # fmt: skip
        select_run(client, "bench", "val/ndcg@11", None)


@pytest.fixture(scope="module")
def exported(client, tmp_path_factory):
    """One exported bundle; tests that change it work on a copy (``bundle``)."""
    out = tmp_path_factory.mktemp("exported") / "bundle"
    export_bundle(client, select_run(client, "bench", "val/ndcg@10", None), out,
                  IndexSettings("exact"))  # fmt: skip
    return out


@pytest.fixture
def bundle(exported, tmp_path):
    copy = tmp_path / "bundles" / "bundle"
    shutil.copytree(exported, copy)
    return copy


@pytest.fixture(scope="module")
def demo(exported):
    return BundleRecommender.load(exported)


def test_bundle_has_manifest_with_run_fingerprints_and_checksums(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["model"] == "als" and len(manifest["split_fingerprint"]) == 64
    assert manifest["index"]["recall_at_10_vs_exact"] == 1.0
    assert set(manifest["files"]) == set(bundle_module.FILES)
    assert "version.faiss-cpu" in manifest["versions"] and manifest["created_at"]


def test_crash_during_export_leaves_the_previous_bundle_intact(client, bundle, monkeypatch):
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    best = select_run(client, "bench", "val/ndcg@10", None)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated crash while the new bundle is being written")

    monkeypatch.setattr(bundle_module, "sha256_file", crash)  # after the index is written
    with pytest.raises(KeyboardInterrupt):
        export_bundle(client, best, bundle, IndexSettings("hnsw"), replace=True)
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before
    assert [p.name for p in bundle.parent.iterdir()] == ["bundle"]  # no temporary folder left
    monkeypatch.undo()
    BundleRecommender.load(bundle).recommend(1)
    with pytest.raises(ConfigError, match="--replace"):
        export_bundle(client, best, bundle, IndexSettings("exact"))


def test_replace_refuses_a_folder_that_is_not_a_bundle(client, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("a thesis chapter")
    best = select_run(client, "bench", "val/ndcg@10", None)
    with pytest.raises(ConfigError, match="is not a bundle"):
        export_bundle(client, best, victim, IndexSettings("exact"), replace=True)
    assert (victim / "notes.txt").read_text() == "a thesis chapter"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]


def test_replace_replaces_a_bundle(client, bundle):
    best = select_run(client, "bench", "val/ndcg@10", None)
    manifest = export_bundle(client, best, bundle, IndexSettings("hnsw"), replace=True)
    assert manifest["index"]["kind"] == "hnsw"
    assert BundleRecommender.load(bundle).manifest["index"]["kind"] == "hnsw"


def test_tampered_bundle_fails_to_load_with_a_clear_error(bundle):
    np.save(bundle / "item_embeddings.npy", np.zeros((200, 8), dtype=np.float32))
    with pytest.raises(RecsysError, match="item_embeddings.npy has SHA-256 .* the manifest says"):
        BundleRecommender.load(bundle)
    (bundle / "seen.npz").unlink()
    with pytest.raises(RecsysError, match="inconsistent"):
        BundleRecommender.load(bundle)
    (bundle / "manifest.json").write_text("{")
    with pytest.raises(RecsysError, match="not valid JSON"):
        BundleRecommender.load(bundle)


def test_recommendations_exclude_rated_items_and_match_the_batch_path(demo):
    table = demo.recommend(7, k=10)
    assert list(table.columns) == demo_module.COLUMNS and len(table) == 10
    assert table["rank"].tolist() == list(range(1, 11))
    assert (np.diff(table["score"]) <= 1e-6).all()
    row = demo.user_index(7)
    rated_ids = demo.items["item_id"].to_numpy()[demo.ratings[row].indices]
    assert not set(table["movie_id"]) & set(rated_ids)
    many, _ = demo.recommend_many(np.array([7, 3, 7]), k=10)
    np.testing.assert_array_equal(many[0], table["movie_id"].to_numpy())
    np.testing.assert_array_equal(many[0], many[2])


def test_the_bundle_holds_every_rating_and_none_is_recommended(demo):
    """Test-part ratings too: the bundle's ratings are the release's, all of them."""
    release = make_ratings()  # what the tracked benchmark trained on
    users = demo.user_index(1), demo.user_index(120)
    rated = demo.ratings
    assert rated.nnz == len(release) > demo.seen.nnz
    assert (rated.multiply(demo.seen) > 0).sum() == demo.seen.nnz  # training items are rated
    first = release[release["user_id"] == 1].sort_values("item_id")
    np.testing.assert_array_equal(demo.items["item_id"].to_numpy()[rated[users[0]].indices],
                                  first["item_id"].to_numpy())  # fmt: skip
    np.testing.assert_array_equal(rated[users[0]].data, first["rating"].to_numpy())
    assert rated[users[1]].nnz == (release["user_id"] == 120).sum()
    many, _ = demo.recommend_many(demo.user_ids, k=10)  # every user of the bundle
    row_of = {m: i for i, m in enumerate(demo.items["item_id"])}
    for user, movies in zip(demo.user_ids, many, strict=True):
        row = demo.user_index(user)
        assert not set(movies) & set(demo.items["item_id"].to_numpy()[rated[row].indices])
        single = demo.recommend(int(user), k=10)["movie_id"].to_numpy()
        assert rated[row, [row_of[m] for m in single]].nnz == 0


def test_rating_matrix_keeps_every_rating_and_the_latest_of_a_pair():
    ratings = pd.DataFrame({"user_id": [2, 1, 2, 2], "item_id": [30, 10, 10, 30],
                            "rating": [1.0, 4.0, 2.0, 5.0], "timestamp": [5, 1, 2, 9]})
    matrix = export.rating_matrix(ratings, np.array([1, 2, 3]), np.array([10, 20, 30]))
    np.testing.assert_array_equal(matrix.toarray(), [[4, 0, 0], [2, 0, 5], [0, 0, 0]])


def test_similar_items_and_new_users(demo):
    by_title = demo.similar_items("Movie 5 (1955)", k=5)
    assert len(by_title) == 5 and 5 not in set(by_title["movie_id"])
    assert by_title.equals(demo.similar_items(5, k=5))
    assert by_title.equals(demo.similar_items("movie 5 (1955)", k=5))
    assert by_title["genres"].iloc[0] in {f"{g}|Drama" for g in ("Action", "Comedy", "Drama",
                                                                 "Sci-Fi")}  # fmt: skip
    new = demo.recommend_for_new_user(liked=["Movie 5 (1955)", 9, "Movie 13 (1963)"], k=10)
    assert len(new) == 10 and not {5, 9, 13} & set(new["movie_id"])


def test_similar_items_by_pmi_find_the_taste_group_and_by_cosine_the_vectors(demo):
    """Users of a taste group rate movies of their group (movie id mod 4) far more often."""
    for movie in (5, 2, 100):
        pmi = demo.similar_items(movie, k=10)
        assert (pmi["movie_id"] % 4 == movie % 4).sum() >= 9
        assert (np.diff(pmi["score"]) <= 0).all() and pmi["rank"].tolist() == list(range(1, 11))
        row = demo._item_index[movie]
        expected = demo_module.co_rating_pmi(demo.ratings, row)
        np.testing.assert_allclose(pmi["score"], np.sort(np.delete(expected, row))[::-1][:10],
                                   rtol=1e-6)  # fmt: skip
    vectors = demo.item_vectors / np.linalg.norm(demo.item_vectors, axis=1, keepdims=True)
    cosine = demo.similar_items(5, k=10, similarity="cosine")
    row = demo._item_index[5]
    brute = np.argsort(-(vectors @ vectors[row]), kind="stable")[1:11]
    np.testing.assert_array_equal(cosine["movie_id"], demo.items["item_id"].to_numpy()[brute])
    with pytest.raises(RecsysError, match="similarity must be one of pmi, cosine, got 'dot'"):
        demo.similar_items(5, similarity="dot")


def test_neighbour_popularity_ranks_count_ratings_in_the_bundle(demo):
    counts = make_ratings().groupby("item_id").size()
    counts = counts.reindex(demo.items["item_id"], fill_value=0).to_numpy()
    for similarity in demo_module.SIMILARITIES:
        neighbours = demo.similar_items(5, k=10, similarity=similarity)["movie_id"].to_numpy()
        ranks = demo_module.neighbour_popularity_ranks(demo, "Movie 5 (1955)",
                                                        similarity=similarity)
        expected = [1 + (counts > counts[m - 1]).sum() for m in neighbours]  # ids 1..200
        np.testing.assert_array_equal(ranks, expected)


def test_unknown_users_and_movies_get_suggestions(demo):
    with pytest.raises(RecsysError, match="unknown user 9999: .* from 1 to 120.*"
                                          "recommend_for_new_user"):  # fmt: skip
        demo.recommend(9999)
    with pytest.raises(RecsysError, match="did you mean: .*Movie 5 \\(1955\\)"):
        demo.similar_items("Movie 5 (1956)")
    with pytest.raises(RecsysError, match="unknown movie id 5000"):
        demo.recommend_for_new_user(liked=[5000])


def test_cli_prints_a_table_or_one_line(exported, capsys):
    assert demo_module.main(["--bundle", str(exported), "--user", "3", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-4].split() == ["rank", "id", "title", "genres", "score"]
    assert [line.split()[0] for line in lines[-3:]] == ["1", "2", "3"]
    assert demo_module.main(["--bundle", str(exported), "--user", "9999"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown user 9999") and err.count("\n") == 1
    assert '--like "Fargo (1996)"' in err and "recommend_for_new_user" not in err
    assert demo_module.main(["--bundle", str(exported / "missing"), "--user", "3"]) == 1
    assert "run `python -m recsys.export` first" in capsys.readouterr().err


def test_cli_user_output_names_the_run_and_shows_the_users_favourites(exported, demo, capsys):
    assert demo_module.main(["--bundle", str(exported), "--user", "7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    run, rated = demo.manifest["run_id"], demo.user_ratings(7)
    release = make_ratings().query("user_id == 7")
    assert sorted(rated["movie_id"]) == sorted(release["item_id"])
    assert rated["rating"].is_monotonic_decreasing and list(rated.columns) == [
        "movie_id", "title", "year", "genres", "rating"]
    assert lines[0] == f"User 7 ({len(rated)} films rated) | model als, run {run[:8]}"
    favourites = lines[lines.index("Their top-rated films:") + 2:][:5]
    stars = [int(line.split()[-1]) for line in favourites]
    assert stars == sorted(stars, reverse=True) == rated["rating"].head(5).astype(int).tolist()
    assert [int(line.split()[0]) for line in favourites] == rated["movie_id"].head(5).tolist()
    assert "score: inner product of the user's and the film's vectors" in lines
    table = lines[-10:]
    assert [int(line.split()[0]) for line in table] == list(range(1, 11))
    assert [int(line.split()[1]) for line in table] == demo.recommend(7)["movie_id"].tolist()
    assert not set(rated["movie_id"]) & {int(line.split()[1]) for line in table}


@pytest.mark.parametrize("query", [["--user", "7"], ["--similar", "Movie 5 (1955)"],
                                   ["--similar", "5", "--similarity", "cosine"],
                                   ["--like", "Movie 5 (1955)", "--like", "9"]])  # fmt: skip
def test_cli_output_fits_80_columns_with_one_year_per_title(exported, capsys, query):
    assert demo_module.main(["--bundle", str(exported), *query, "-k", "10"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) < 80
    assert any(line.startswith("score: ") for line in out.splitlines())
    assert not re.search(r"\(\d{4}\)\s+\d{4}", out)  # "Movie 5 (1955)  1955": the year twice
    assert re.search(r"^   1  +\d+  Movie \d+ \(\d{4}\)", out, re.MULTILINE)  # left-aligned


def test_the_demo_loads_a_bundle_without_mlflow_or_hydra(exported):
    code = ("import sys; from recsys.demo import BundleRecommender; "
            f"BundleRecommender.load({str(exported)!r}).recommend(3); "
            "print(sorted(m for m in ('mlflow', 'hydra', 'omegaconf') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)  # fmt: skip
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("model, kind", [
    ("two_tower", "two_tower.user_tower"), ("multvae", "multvae.encoder"), ("als", None)])
def test_bundles_carry_what_scores_new_users_for_the_models_that_have_it(
        new_user_bundles, model, kind):  # fmt: skip
    manifest = json.loads((new_user_bundles[model] / "manifest.json").read_text())
    loaded = bundle_module.read_bundle(new_user_bundles[model])
    if kind is None:  # every other model's bundle is as it was
        assert "new_users" not in manifest and set(manifest["files"]) == set(bundle_module.FILES)
        assert loaded.new_users is None
        return
    assert manifest["new_users"] == kind == loaded.new_users.kind
    assert set(manifest["files"]) == {*bundle_module.FILES, *bundle_module.NEW_USER_FILES}
    assert loaded.new_users.weights and all(np.isfinite(w).all()
                                            for w in loaded.new_users.weights.values())  # fmt: skip


@pytest.fixture
def two_tower_bundle(new_user_bundles, tmp_path):
    return shutil.copytree(new_user_bundles["two_tower"], tmp_path / "bundle")


def test_a_bundle_from_before_the_new_user_files_still_loads(two_tower_bundle):
    manifest = json.loads((two_tower_bundle / "manifest.json").read_text())
    for name in bundle_module.NEW_USER_FILES:
        (two_tower_bundle / name).unlink()
        del manifest["files"][name]
    del manifest["new_users"]
    (two_tower_bundle / "manifest.json").write_text(json.dumps(manifest))
    assert bundle_module.is_bundle(two_tower_bundle)
    assert bundle_module.read_bundle(two_tower_bundle).new_users is None
    BundleRecommender.load(two_tower_bundle).recommend(3)


def test_damaged_new_user_files_are_refused_with_the_fix(two_tower_bundle):
    assert bundle_module.is_bundle(two_tower_bundle)
    (two_tower_bundle / "new_users.npz").write_bytes(b"not an npz")
    with pytest.raises(RecsysError, match="new_users.npz has SHA-256 .* export it again with"):
        bundle_module.read_bundle(two_tower_bundle)
    manifest = json.loads((two_tower_bundle / "manifest.json").read_text())
    del manifest["files"]["new_users.npz"]
    (two_tower_bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RecsysError, match="lists new_users.json without its pair"):
        bundle_module.read_bundle(two_tower_bundle)
