"""Fault injection into the demo and the export: bad ``-k``, a damaged bundle, a folder that is
no bundle, a mistyped flag. Each case fails with one ``error:`` line and changes no file."""

import json
import shutil

import faiss
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import bundle, demo, export
from recsys.files import sha256_file
from tests.faults.harness import failing_cli

N_USERS, N_ITEMS, DIM = 5, 8, 4


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    """A tiny bundle written by ``bundle.write_bundle`` (no MLflow, no training): 5 users,
    8 movies; user 1 has seen movies 1 and 2 in training and rated movie 3 besides."""
    rng = np.random.default_rng(0)
    item_vectors = rng.normal(size=(N_ITEMS, DIM)).astype(np.float32)
    index = faiss.IndexFlatIP(DIM)
    index.add(item_vectors)
    items = pd.DataFrame({"item_id": np.arange(1, N_ITEMS + 1),
                          "title": [f"Movie {i} (199{i})" for i in range(1, N_ITEMS + 1)],
                          "year": pd.array([1990 + i for i in range(1, N_ITEMS + 1)], "Int64"),
                          "genres": [["Drama"]] * N_ITEMS})  # fmt: skip
    seen = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 1])), shape=(N_USERS, N_ITEMS))
    ratings = sp.csr_matrix(([5.0, 3.0, 1.0], ([0, 0, 0], [0, 1, 2])), shape=(N_USERS, N_ITEMS))
    contents = bundle.Bundle(index=index, items=items, seen=seen.astype(np.float32),
                             ratings=ratings.astype(np.float32),
                             user_embeddings=rng.normal(size=(N_USERS, DIM)).astype(np.float32),
                             item_embeddings=item_vectors, user_ids=np.arange(1, N_USERS + 1),
                             item_ids=np.arange(1, N_ITEMS + 1),
                             manifest={"run_id": "0123456789abcdef", "model": "als"})  # fmt: skip
    out = tmp_path_factory.mktemp("small-bundle") / "bundle"
    bundle.write_bundle(out, contents)
    return out


@pytest.fixture
def damaged(small_bundle, tmp_path):
    """A copy of the small bundle, to damage."""
    return shutil.copytree(small_bundle, tmp_path / "bundle")


@pytest.mark.parametrize("k", ["0", "-5", "abc", "2.5"])
@pytest.mark.parametrize("query", [["--user", "1"], ["--similar", "3"], ["--like", "3"]])
def test_demo_k_must_be_a_positive_whole_number(small_bundle, capsys, query, k):
    line = failing_cli(capsys, demo.main, ["--bundle", str(small_bundle), *query, "-k", k],
                       protect=(small_bundle,))  # fmt: skip
    assert line == (f"error: argument -k: expected a positive whole number, got {k!r} "
                    f"(see python -m recsys.demo --help)")  # fmt: skip


def test_demo_api_refuses_a_bad_k(small_bundle):
    recommender = demo.BundleRecommender.load(small_bundle)
    for k in (0, -5, 2.5, True):
        with pytest.raises(demo.RecsysError, match="k must be a positive whole number"):
            recommender.recommend(1, k)
    with pytest.raises(demo.RecsysError, match="got 0"):
        recommender.recommend_many(np.array([1, 2]), 0)


def test_demo_k_beyond_the_catalogue_shows_what_there_is(small_bundle, capsys):
    recommender = demo.BundleRecommender.load(small_bundle)
    assert len(recommender.recommend(1, 1000)) == N_ITEMS - 3  # all but the three rated
    similar = recommender.similar_items(3, 1000, similarity="cosine")
    assert len(similar) == N_ITEMS - 1 and 3 not in set(similar["movie_id"])
    together = recommender.similar_items(3, 1000)  # PMI: only what someone rated with movie 3
    assert together["movie_id"].tolist() == [1, 2]
    assert recommender.similar_items(5, 10).empty  # nobody rated movie 5
    assert demo.main(["--bundle", str(small_bundle), "--user", "1", "-k", "50"]) == 0
    out = capsys.readouterr().out
    assert "(5 movies: all there are left to show, fewer than -k 50)" in out


def test_demo_unknown_movie_is_one_line_with_suggestions(small_bundle, capsys):
    line = failing_cli(capsys, demo.main, ["--bundle", str(small_bundle), "--similar",
                                           "Movie 3 (2000)"], protect=(small_bundle,))  # fmt: skip
    assert line.startswith("error: unknown movie 'Movie 3 (2000)'; did you mean: Movie 3 (1993);")


def test_truncated_manifest_names_the_bundle_and_the_export(damaged, capsys):
    manifest = damaged / bundle.MANIFEST
    manifest.write_bytes(manifest.read_bytes()[:40])
    line = failing_cli(capsys, demo.main, ["--bundle", str(damaged), "--user", "1"],
                       protect=(damaged,))  # fmt: skip
    assert line == (f"error: bundle {damaged}: manifest.json is not valid JSON (truncated?); "
                    f"export it again with `python -m recsys.export --out {damaged} "
                    f"--replace`")  # fmt: skip


def test_manifest_without_a_file_list_is_refused(damaged, capsys):
    (damaged / bundle.MANIFEST).write_text("[1, 2]")
    line = failing_cli(capsys, demo.main, ["--bundle", str(damaged), "--similar", "3"],
                       protect=(damaged,))  # fmt: skip
    assert "manifest.json does not list the bundle's files" in line


def test_bundle_missing_a_file_names_it_and_the_run(damaged, capsys):
    (damaged / "seen.npz").unlink()
    line = failing_cli(capsys, demo.main, ["--bundle", str(damaged), "--like", "3"],
                       protect=(damaged,))  # fmt: skip
    assert line == (f"error: bundle {damaged} lacks seen.npz, which its manifest lists; export "
                    f"it again with `python -m recsys.export --run-id 0123456789abcdef --out "
                    f"{damaged} --replace`")  # fmt: skip


def test_bundle_from_before_ratings_npz_asks_for_an_export(damaged, capsys):
    """A bundle written before ratings.npz existed: its manifest lists one file fewer."""
    manifest = json.loads((damaged / bundle.MANIFEST).read_text())
    del manifest["files"]["ratings.npz"]
    (damaged / bundle.MANIFEST).write_text(json.dumps(manifest))
    (damaged / "ratings.npz").unlink()
    line = failing_cli(capsys, demo.main, ["--bundle", str(damaged), "--user", "1"],
                       protect=(damaged,))  # fmt: skip
    assert line == (f"error: bundle {damaged}: its manifest does not list ratings.npz (written "
                    f"by an older recsys?); export it again with `python -m recsys.export "
                    f"--run-id 0123456789abcdef --out {damaged} --replace`")  # fmt: skip
    assert bundle.is_bundle(damaged)  # so that --replace may rewrite it


def test_ratings_of_the_wrong_shape_are_refused(damaged, capsys):
    sp.save_npz(damaged / "ratings.npz", sp.csr_matrix((3, N_ITEMS), dtype=np.float32))
    manifest = json.loads((damaged / bundle.MANIFEST).read_text())
    manifest["files"]["ratings.npz"] = sha256_file(damaged / "ratings.npz")
    (damaged / bundle.MANIFEST).write_text(json.dumps(manifest))
    line = failing_cli(capsys, demo.main, ["--bundle", str(damaged), "--user", "1"],
                       protect=(damaged,))  # fmt: skip
    assert line.startswith(f"error: bundle {damaged}: ratings.npz is 3 x 8, the bundle has 5 "
                           f"users x 8 movies; export it again")  # fmt: skip


def test_a_damaged_bundle_can_be_replaced_a_foreign_folder_not(damaged, tmp_path):
    (damaged / "seen.npz").unlink()
    (damaged / bundle.MANIFEST).write_text("{")
    assert bundle.is_bundle(damaged)  # nothing but bundle files: --replace may rewrite it
    (damaged / "notes.txt").write_text("mine")
    assert not bundle.is_bundle(damaged)
    assert not bundle.is_bundle(tmp_path / "nowhere")


def test_export_replace_refuses_a_folder_that_is_not_a_bundle(tracked_benchmark, tmp_path,
                                                              capsys):  # fmt: skip
    uri, _, root = tracked_benchmark
    victim = tmp_path / "thesis"
    victim.mkdir()
    (victim / "chapter.md").write_text("a thesis chapter")
    (victim / bundle.MANIFEST).write_text("{}")
    line = failing_cli(capsys, export.main, ["--tracking-uri", uri, "--experiment", "bench",
                                             "--out", str(victim), "--replace"],
                       protect=(victim, root))  # fmt: skip
    assert line == (f"error: {victim} exists and is not a bundle (no manifest.json listing its "
                    f"files): refusing to replace it; choose another --out")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]  # no temporary folder


def test_export_replace_keeps_a_bundle_someone_put_files_into(tracked_benchmark, small_bundle,
                                                              tmp_path, capsys):  # fmt: skip
    uri, _, root = tracked_benchmark
    copy = shutil.copytree(small_bundle, tmp_path / "bundle")
    (copy / "my_notes.txt").write_text("what the committee asked")
    (copy / "sub").mkdir()
    line = failing_cli(capsys, export.main, ["--tracking-uri", uri, "--experiment", "bench",
                                             "--out", str(copy), "--replace"],
                       protect=(copy, root))  # fmt: skip
    assert line == (f"error: {copy} holds files no export wrote (my_notes.txt, sub): refusing "
                    f"to replace it; move them out, or choose another --out")  # fmt: skip
    assert (copy / "my_notes.txt").read_text() == "what the committee asked"
    assert not bundle.is_bundle(copy)


@pytest.mark.parametrize(("main", "argv", "message"), [
    (demo.main, ["--user", "1", "--bogus"], "unrecognized arguments: --bogus"),
    (demo.main, ["--user", "x"], "argument --user: invalid int value: 'x'"),
    (demo.main, [], "give --user, --like (one or more) or --similar"),
    (demo.main, ["--similar", "3", "--similarity", "dot"],
     "argument --similarity: invalid choice: 'dot'"),
    (export.main, ["--bogus"], "unrecognized arguments: --bogus"),
    (export.main, ["--nlist", "0"], "argument --nlist: expected a positive whole number"),
    (export.main, ["--index", "lsh"], "argument --index: invalid choice: 'lsh'"),
])  # fmt: skip
def test_a_mistyped_command_line_is_one_line(capsys, tmp_path, monkeypatch, main, argv,
                                             message):  # fmt: skip
    monkeypatch.chdir(tmp_path)  # nothing may be written, not even a default mlflow.db
    line = failing_cli(capsys, main, argv, protect=(tmp_path,))
    assert line.startswith(f"error: {message}") and line.endswith("--help)")
    assert list(tmp_path.iterdir()) == []
