"""ML-1M to ML-32M from zips in each real format: install, verify, load, and the whole pipeline.

A test zip cannot have GroupLens' published MD5, so the tests register the release with their
zip's MD5 (``with_md5``), as a real release is registered with the published one; ML-32M's zip
carries its own ``checksums.txt``, so it needs nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from recsys.config import CONF_DIR, compose_config, create_model
from recsys.data import MovieLens, download, load_movielens
from recsys.data.__main__ import main
from recsys.data.download import DATASETS, ITEMS_FILE, SOURCE_FILE, USERS_FILE
from recsys.data.movielens import read_ratings
from recsys.errors import ConfigError, DataError
from recsys.train import run
from tests.conftest import SYNTHETIC
from tests.data.releases import N_USERS, RELEASES, UNRATED, Release, release_zip
from tests.faults.harness import failing_cli, failing_subprocess


@pytest.fixture(autouse=True)
def no_grouplens(monkeypatch):
    """Downloads from GroupLens are refused at once (a proxy that is not there), also on a
    machine with internet: the tests see the offline path."""
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def with_md5(patch: pytest.MonkeyPatch, release: Release) -> None:
    """Register ``release.name`` with the test zip's MD5 in place of GroupLens' published one."""
    spec = DATASETS[release.name]
    if spec.zip_md5 is not None:
        patch.setitem(DATASETS, release.name, dataclasses.replace(spec, zip_md5=release.md5))


def placed(data_dir: Path, release: Release) -> Path:
    """``release``'s zip put in ``data_dir`` by hand; the data folder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / f"{release.name}.zip").write_bytes(release.archive)
    return data_dir


@pytest.fixture(scope="module", params=RELEASES)
def installed(request, tmp_path_factory):
    """``(release, data_dir, loaded MovieLens)``: each release's zip placed by hand and loaded
    once per module."""
    release = release_zip(request.param)
    with pytest.MonkeyPatch.context() as patch:
        with_md5(patch, release)
        data_dir = placed(tmp_path_factory.mktemp("data"), release)
        yield release, data_dir, load_movielens(data_dir, release.name)


def test_ratings_are_kept_byte_for_byte_and_parsed_typed(installed):
    release, data_dir, data = installed
    spec = DATASETS[release.name]
    kept = data_dir / release.name / spec.ratings_file
    assert kept.read_bytes() == release.member(spec.layout.ratings_member)
    expected = release.ratings.astype({"rating": np.float32})
    pd.testing.assert_frame_equal(data.ratings, expected, check_dtype=False)
    assert dict(data.ratings.dtypes) == {"user_id": np.int64, "item_id": np.int64,
                                         "rating": np.float32, "timestamp": np.int64}  # fmt: skip
    if release.name != "ml-1m":
        assert (data.ratings["rating"] % 1 == 0.5).any()  # half stars survive


def test_items_keep_titles_years_and_genres_of_every_film(installed):
    release, _, data = installed
    items = data.items.set_index("item_id")
    assert list(items.index) == sorted(release.titles)  # the unrated film has an index too
    assert items["title"].to_dict() == release.titles  # Latin-1, colons, quotes decoded
    assert items["genres"].to_dict() == release.genres  # "(no genres listed)" -> []
    assert items.loc[1, "year"] == 1995 and items.loc[UNRATED, "year"] == 2001
    assert items.loc[4, "year"] is pd.NA


def test_users_have_demographics_only_where_the_release_has_them(installed):
    release, _, data = installed
    assert list(data.users["user_id"]) == list(range(1, N_USERS + 1))
    if release.name == "ml-1m":
        assert list(data.users.columns) == ["user_id", "age", "gender", "occupation", "zip_code"]
        user = data.users.set_index("user_id").loc[13]  # 13::F::56::13::55013
        assert (user["age"], user["gender"], user["occupation"]) == (56, "F", "retired")
        assert user["zip_code"] == "55013"
    else:
        assert list(data.users.columns) == ["user_id"]


def test_the_manifest_records_the_ratings_sha256_and_every_later_use_checks_it(installed):
    release, data_dir, data = installed
    spec, folder = DATASETS[release.name], data_dir / release.name
    manifest = json.loads((folder / SOURCE_FILE).read_text())
    member = release.member(spec.layout.ratings_member)
    assert manifest["ratings_sha256"] == hashlib.sha256(member).hexdigest() == data.ratings_sha256
    assert manifest["source"] == str(data_dir / f"{release.name}.zip")
    users = [USERS_FILE] if release.name == "ml-1m" else []
    assert sorted(manifest["sha256"]) == sorted([spec.ratings_file, ITEMS_FILE, *users])
    assert sorted(p.name for p in folder.iterdir()) == sorted([*manifest["sha256"], SOURCE_FILE])


@pytest.mark.parametrize("name", RELEASES)
def test_load_split_train_evaluate(name, tmp_path, monkeypatch):
    release = release_zip(name, seed=1)
    with_md5(monkeypatch, release)
    data_dir = placed(tmp_path / "data", release)
    cfg = compose_config([f"data={name}", f"data.dir={data_dir}", "model=popular",
                          "tracking.enabled=false"])  # fmt: skip
    metrics = run(cfg)
    assert metrics["test/n_users"] == N_USERS and 0 < metrics["test/ndcg@10"] <= 1


def test_train_data_ml_1m_end_to_end_logs_the_verified_data(tmp_path, monkeypatch, mlflow_uri):
    """``python -m recsys.train data=ml-1m model=ease`` on a hand-placed zip, into MLflow."""
    release = release_zip("ml-1m")
    with_md5(monkeypatch, release)
    data_dir = placed(tmp_path / "data", release)
    monkeypatch.chdir(tmp_path)
    metrics = run(compose_config(["data=ml-1m", f"data.dir={data_dir}", "model=ease",
                                  f"tracking.uri={mlflow_uri}"]))  # fmt: skip
    assert metrics["test/ndcg@10"] > 0
    client = MlflowClient(mlflow_uri)
    (logged,) = client.search_runs([client.get_experiment_by_name("ml-1m").experiment_id])
    assert logged.info.status == "FINISHED" and logged.data.params["data.name"] == "ml-1m"
    manifest = json.loads((data_dir / "ml-1m" / SOURCE_FILE).read_text())
    assert logged.data.tags["data.sha256"] == manifest["ratings_sha256"]


def test_an_absent_zip_is_one_line_naming_where_to_put_it(tmp_path):
    """The real entry point, in a subprocess, on an empty data folder; GroupLens is refused at
    once through a proxy that is not there."""
    data_dir = tmp_path / "empty"
    line, _ = failing_subprocess(
        "recsys.train", "data=ml-1m", f"data.dir={data_dir}", "tracking.enabled=false",
        cwd=tmp_path, env={"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert f"{data_dir / 'ml-1m.zip'}: not present" in line
    assert f"download {DATASETS['ml-1m'].grouplens_url} on a machine with internet" in line
    assert f"put it at {data_dir / 'ml-1m.zip'}" in line
    assert "unreachable (Failed to establish a new connection: [Errno 111] Connection refused)" \
        in line  # the reason, not requests' nested repr
    assert not any(data_dir.iterdir())  # no copy, no temporary, no empty downloads/ left


def test_a_zip_without_the_published_md5_is_refused(tmp_path, capsys):
    release = release_zip("ml-1m")  # registered with GroupLens' MD5, which it cannot have
    data_dir = placed(tmp_path, release)
    argv = ["download", "--data-dir", str(data_dir), "--name", "ml-1m"]
    line = failing_cli(capsys, main, argv, protect=(data_dir,))
    published = DATASETS["ml-1m"].zip_md5
    assert (f"checksum mismatch for {data_dir / 'ml-1m.zip'}: expected MD5 {published} "
            f"(published by GroupLens), got {release.md5}") in line  # fmt: skip
    assert not (data_dir / "ml-1m").exists()


def rezipped(release: Release, **edits) -> bytes:
    """``release``'s zip with member ``file`` replaced by ``edits[file](its bytes)``."""
    source = zipfile.ZipFile(io.BytesIO(release.archive))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            edit = edits.get(info.filename.rsplit("/", 1)[1], lambda data: data)
            target.writestr(info.filename, edit(source.read(info.filename)))
    return buffer.getvalue()


ML32M_DAMAGE = {
    "ratings.csv edited": ({"ratings.csv": lambda data: data.replace(b",3.5,", b",4.5,", 1)},
                           "checksum mismatch for ml-32m/ratings.csv: expected MD5"),
    "movies.csv edited": ({"movies.csv": lambda data: data.replace(b"Cats", b"Dogs")},
                          "checksum mismatch for ml-32m/movies.csv: expected MD5"),
    "checksums.txt lacks ratings.csv": (
        {"checksums.txt": lambda data: b"".join(line for line in data.splitlines(True)
                                                if b"ratings.csv" not in line)},
        "ml-32m/checksums.txt lists no MD5 for ratings.csv"),
}  # fmt: skip


@pytest.mark.parametrize("case", ML32M_DAMAGE)
def test_ml_32m_members_are_checked_against_its_checksums_txt(case, tmp_path, capsys):
    edits, reason = ML32M_DAMAGE[case]
    (tmp_path / "ml-32m.zip").write_bytes(rezipped(release_zip("ml-32m"), **edits))
    argv = ["download", "--data-dir", str(tmp_path), "--name", "ml-32m"]
    line = failing_cli(capsys, main, argv, protect=(tmp_path,))
    assert reason in line and not (tmp_path / "ml-32m").exists()


def test_md5_lists_in_bsd_form_are_read_too(tmp_path):
    release = release_zip("ml-32m")

    def bsd(data: bytes) -> bytes:
        pairs = (line.split(b"  ") for line in data.splitlines())
        return b"".join(b"MD5 (%s) = %s\n" % (file, md5) for md5, file in pairs)

    (tmp_path / "ml-32m.zip").write_bytes(rezipped(release, **{"checksums.txt": bsd}))
    assert len(load_movielens(tmp_path, "ml-32m").ratings) == len(release.ratings)


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])
def test_ml_10m_movies_dat_is_read_in_either_encoding(encoding, tmp_path, monkeypatch):
    release = release_zip("ml-10m", movies_encoding=encoding)
    with_md5(monkeypatch, release)
    items = load_movielens(placed(tmp_path, release), "ml-10m").items
    assert items.loc[items["item_id"] == 1, "title"].item() == "Misérables, Les (1995)"


@pytest.mark.parametrize("damage", ["edited", "manifest removed"])
def test_a_copy_changed_after_install_is_refused_with_the_fix(damage, tmp_path, monkeypatch,
                                                              capsys):  # fmt: skip
    release = release_zip("ml-10m")
    with_md5(monkeypatch, release)
    folder = download.ensure_dataset(placed(tmp_path, release), "ml-10m")
    ratings = folder / "ratings.dat"
    if damage == "edited":
        ratings.write_bytes(ratings.read_bytes().replace(b"::3.5::", b"::4.5::", 1))
        reason = f"checksum mismatch for {ratings}: expected SHA-256"
    else:
        (folder / SOURCE_FILE).unlink()
        reason = f"{ratings} cannot be verified: {folder / SOURCE_FILE}, which records its"
    argv = ["download", "--data-dir", str(tmp_path), "--name", "ml-10m"]
    line = failing_cli(capsys, main, argv, protect=(tmp_path,))
    assert reason in line and "--name ml-10m --force" in line
    assert main([*argv, "--force"]) == 0  # the fix, followed literally: from the placed zip
    (aside,) = tmp_path.glob("ml-10m.damaged-*")  # kept, not deleted
    assert (aside / SOURCE_FILE).exists() == (damage == "edited")
    assert load_movielens(tmp_path, "ml-10m").ratings_sha256 == hashlib.sha256(
        release.member("ratings.dat")).hexdigest()  # fmt: skip


@pytest.mark.parametrize(("file", "text", "reason"), [
    ("ratings.dat", "1::2::3::4\n1::2::3\n", "Integer column has NA values"),
    ("ratings.dat", "1::2::3::4\n1::2::3::4::5\n", "a line has more fields than user::"),
    ("ratings.csv", "user,item,rating,timestamp\n1,2,3.5,4\n", "header 'user,item,rating"),
    ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,x,4\n", "could not convert"),
])  # fmt: skip
def test_a_malformed_ratings_file_fails_to_parse(file, text, reason, tmp_path):
    path = tmp_path / file
    path.write_text(text)
    with pytest.raises(ValueError, match=reason):
        read_ratings(path)


def test_a_model_that_needs_demographics_is_refused_where_there_are_none():
    users = pd.DataFrame({"user_id": [1, 2]})
    items = pd.DataFrame({"item_id": [1], "title": ["A (1990)"], "year": [1990],
                          "genres": [["Drama"]]})  # fmt: skip
    data = MovieLens("ml-20m", pd.DataFrame(), users, items, ratings_sha256="x")
    with pytest.raises(ConfigError, match="demographics, which ml-20m does not have: use "
                                          "data=ml-100k or data=ml-1m"):  # fmt: skip
        create_model("two_tower", seed=0, data=data)


def test_every_release_has_a_data_config_and_every_data_config_a_release():
    names = {}
    for path in sorted((CONF_DIR / "data").glob("*.yaml")):
        names[path.stem] = compose_config([f"data={path.stem}"]).data.name
    assert names.pop("ml100k") == "ml-100k"  # the former name, kept as an alias
    assert names.pop("synthetic") == "synthetic"  # generated, not a release
    assert names == {name: name for name in DATASETS if name != SYNTHETIC}


def test_the_default_data_folder_is_the_users_cache_unless_recsys_data_dir_says(monkeypatch,
                                                                               tmp_path):
    monkeypatch.delenv(download.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the same folder from any working directory
    cached = str(tmp_path / "cache" / "recsys" / "data")
    assert compose_config([]).data.dir == download.default_data_dir() == cached
    monkeypatch.setenv(download.DATA_DIR_ENV, str(tmp_path))
    assert compose_config([]).data.dir == download.default_data_dir() == str(tmp_path)
    assert compose_config([f"data.dir={tmp_path}/other"]).data.dir == f"{tmp_path}/other"


def test_a_download_that_does_not_verify_is_removed(tmp_path, monkeypatch):
    from tests.conftest import serve_download

    release = release_zip("ml-32m")
    serve_download(monkeypatch, rezipped(release, **{"movies.csv": lambda d: d + b"9,X,Drama\n"}))
    with pytest.raises(DataError, match=r"movies.csv: expected MD5 .* \(the download was removed"):
        download.ensure_dataset(tmp_path, "ml-32m")
    assert not (tmp_path / download.DOWNLOADS / "ml-32m.zip").exists()


@pytest.mark.parametrize(("name", "file", "edit", "reason"), [
    ("ml-10m", "movies.dat", lambda data: data + b"99::No genres field (1999)\n",
     "ml-10M100K/movies.dat damaged (ValueError: expected MovieID::Title::Genres on every line, "
     "got '99::No genres field (1999)')"),
    ("ml-1m", "users.dat", lambda data: data.replace(b"::13::", b"::31::", 1),
     "ml-1m/users.dat damaged (ValueError: occupation code 31 is not one of 0..20)"),
    ("ml-20m", "movies.csv", lambda data: data.replace(b"movieId,title", b"id,title", 1),
     "ml-20m/movies.csv damaged (ValueError: header 'id,title,genres'"),
])  # fmt: skip
def test_a_malformed_member_is_one_line_naming_it(name, file, edit, reason, tmp_path,
                                                  monkeypatch, capsys):  # fmt: skip
    archive = rezipped(release_zip(name), **{file: edit})
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], zip_md5=None))
    (tmp_path / f"{name}.zip").write_bytes(archive)
    argv = ["download", "--data-dir", str(tmp_path), "--name", name]
    line = failing_cli(capsys, main, argv, protect=(tmp_path,))
    assert reason in line and not (tmp_path / name).exists()
