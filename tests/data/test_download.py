import http.server
import io
import json
import threading
import zipfile

import pytest

from recsys.data import download, formats, load_movielens
from recsys.data.download import _wheel_files, ensure_dataset
from recsys.errors import DataError
from recsys.files import sha256_file
from tests.conftest import (
    SYNTHETIC,
    grouplens_zip,
    make_ratings,
    ratings_bytes,
    serve_download,
    synthetic_spec,
    write_synthetic_release,
)


@pytest.fixture
def ratings(monkeypatch):
    data = ratings_bytes(make_ratings())
    monkeypatch.setitem(download.DATASETS, SYNTHETIC, synthetic_spec(data))
    return data


def test_hand_placed_zip_is_verified_and_normalised(tmp_path, ratings, offline_pip):
    (tmp_path / f"{SYNTHETIC}.zip").write_bytes(grouplens_zip(ratings))
    folder = ensure_dataset(tmp_path, SYNTHETIC)
    assert (folder / "ratings.tsv").read_bytes() == ratings
    data = load_movielens(tmp_path, SYNTHETIC)
    assert len(data.ratings) == 120 * 30
    assert data.items.loc[0, "title"] == "Film é 1 (1995)"
    assert data.items.loc[0, "year"] == 1995 and data.items.loc[0, "genres"] == ["Comedy"]
    unknown = data.items[data.items.item_id == 267].iloc[0]
    assert unknown["genres"] == ["unknown"] and unknown["year"] is download_na()
    assert list(data.users.columns) == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert "source" in (folder / "SOURCE.json").read_text()


def test_a_copy_in_the_earlier_default_folder_is_verified_and_copied(tmp_path, monkeypatch,
                                                                       offline_pip):
    """``data/`` of the working directory was the default data folder: its verified copy is a
    source of the new default folder, and stays as it was."""
    monkeypatch.chdir(tmp_path)
    earlier = write_synthetic_release(tmp_path / "data", monkeypatch) / SYNTHETIC
    before = {path.name: path.read_bytes() for path in earlier.iterdir()}
    folder = ensure_dataset(tmp_path / "cache", SYNTHETIC)
    assert folder == tmp_path / "cache" / SYNTHETIC
    for file in download.DATASETS[SYNTHETIC].files:
        assert (folder / file).read_bytes() == before[file]
    source = json.loads((folder / "SOURCE.json").read_text())["source"]
    assert source == f"{earlier} (the earlier default data folder)"
    assert {path.name: path.read_bytes() for path in earlier.iterdir()} == before


def test_a_damaged_copy_in_the_earlier_folder_is_skipped_for_its_zip(tmp_path, ratings,
                                                                     monkeypatch, offline_pip):
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "data" / SYNTHETIC
    earlier.mkdir(parents=True)
    (earlier / "ratings.tsv").write_bytes(ratings[:-10])  # no manifest, damaged
    (tmp_path / "data" / f"{SYNTHETIC}.zip").write_bytes(grouplens_zip(ratings))
    folder = ensure_dataset(tmp_path / "cache", SYNTHETIC)
    assert (folder / "ratings.tsv").read_bytes() == ratings
    source = json.loads((folder / "SOURCE.json").read_text())["source"]
    assert source == str(tmp_path / "data" / f"{SYNTHETIC}.zip")
    assert (earlier / "ratings.tsv").read_bytes() == ratings[:-10]  # left as it was


def download_na():
    import pandas as pd

    return pd.NA


def test_corrupt_cached_ratings_give_checksum_error_naming_both_hashes(tmp_path, ratings):
    (tmp_path / f"{SYNTHETIC}.zip").write_bytes(grouplens_zip(ratings))
    folder = ensure_dataset(tmp_path, SYNTHETIC)
    (folder / "ratings.tsv").write_bytes(ratings[:-10] + b"0\t0\t0\t0\n")
    with pytest.raises(DataError) as error:
        load_movielens(tmp_path, SYNTHETIC)
    message = str(error.value)
    assert "checksum mismatch" in message and str(folder / "ratings.tsv") in message
    assert download.DATASETS[SYNTHETIC].ratings_sha256 in message
    assert "\n" not in message


def test_force_replaces_only_with_a_verified_copy(tmp_path, ratings, offline_pip):
    (tmp_path / f"{SYNTHETIC}.zip").write_bytes(grouplens_zip(ratings))
    folder = ensure_dataset(tmp_path, SYNTHETIC)
    (tmp_path / f"{SYNTHETIC}.zip").write_bytes(grouplens_zip(ratings + b"1\t1\t1\t1\n"))
    with pytest.raises(DataError, match="could not obtain"):
        ensure_dataset(tmp_path, SYNTHETIC, force=True)
    assert (folder / "ratings.tsv").read_bytes() == ratings  # the good copy is untouched


def test_no_source_lists_every_source_and_the_manual_fix(tmp_path, ratings, offline_pip):
    (tmp_path / f"{SYNTHETIC}.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError) as error:
        ensure_dataset(tmp_path, SYNTHETIC)
    message = str(error.value)
    assert "not a valid zip" in message  # the partial hand-placed zip
    assert "127.0.0.1:9" in message and "unreachable" in message
    assert "pip download" in message
    assert f"put it at {tmp_path / (SYNTHETIC + '.zip')}" in message
    assert not (tmp_path / SYNTHETIC).exists()
    assert "\n" not in message


class _ZipHandler(http.server.BaseHTTPRequestHandler):
    body = b""
    claimed_length = 0

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", str(self.claimed_length))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def zip_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _ZipHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.mark.parametrize("truncate", [False, True])
def test_download_over_http_detects_partial_body(truncate, tmp_path, ratings, zip_server,
                                                 monkeypatch, offline_pip):  # fmt: skip
    body = grouplens_zip(ratings)
    _ZipHandler.body = body[: len(body) // 2] if truncate else body
    _ZipHandler.claimed_length = len(body)
    url = f"http://127.0.0.1:{zip_server.server_port}/ml.zip"
    spec = download.DATASETS[SYNTHETIC]
    served = download.DatasetSpec(**{**spec.__dict__, "grouplens_url": url})
    monkeypatch.setitem(download.DATASETS, SYNTHETIC, served)
    if truncate:
        with pytest.raises(DataError, match="partial download"):
            ensure_dataset(tmp_path, SYNTHETIC)
        assert not (tmp_path / SYNTHETIC).exists()
    else:
        assert url in (ensure_dataset(tmp_path, SYNTHETIC) / "SOURCE.json").read_text()


def test_recbole_wheel_layout_is_read_back_to_grouplens_form(ratings):
    spec = download.DATASETS[SYNTHETIC]
    folder = "recbole/dataset_example/ml-synthetic/ml-synthetic"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        wheel.writestr(f"{folder}.inter", b"user_id:token\titem_id:token\trating:float\t"
                       b"timestamp:float\n" + ratings)  # fmt: skip
        wheel.writestr(
            f"{folder}.user",
            "user_id:token\tage:token\tgender:token\t"
            "occupation:token\tzip_code:token\n1\t24\tM\ttechnician\t85711\n",
        )
        wheel.writestr(
            f"{folder}.item",
            "item_id:token\tmovie_title:token_seq\t"
            "release_year:token\tclass:token_seq\n1\tToy Story\t1995\tAnimation "
            "Children's Comedy\n267\tunkonwn\tunkonwn\tunknown\n",
        )
    files = _wheel_files(
        buffer.getvalue(),
        download.DatasetSpec(
            **{**spec.__dict__, "wheel_folder": "recbole/dataset_example/ml-synthetic"}
        ),
    )
    assert files.ratings == ratings
    assert files.items.decode().splitlines()[1:] == [
        "1\tToy Story (1995)\t1995\tAnimation|Children's|Comedy",
        "267\tunknown\t\tunknown",
    ]
    assert files.users.decode().splitlines()[1] == "1\t24\tM\ttechnician\t85711"


def test_grouplens_zip_and_recbole_wheel_give_the_same_items_bytes():
    # ML-100K's awkward rows as each source has them: a video-release date, a title ending in a
    # space, a title whose last parenthesis is "(V)", and item 267 with nothing known.
    flags = "|".join(["0"] * 8 + ["1"] + ["0"] * 10)  # Drama
    grouplens = (f"23|Taxi Driver (1976)|16-Feb-1996||http://x|{flags}\n"
                 f"267|unknown||||{'|'.join(['1'] + ['0'] * 18)}\n"
                 f"1412|Land Before Time III: The Time of the Great Giving (1995) (V)|01-Jan-1995"
                 f"||http://x|{flags}\n"
                 f"1635|Two Friends (1986) |01-Jan-1986||http://x|{flags}\n")  # fmt: skip
    wheel = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
             "23\tTaxi Driver\t1976\tDrama\n267\tunkonwn\tunkonwn\tunknown\n"
             "1412\tLand Before Time III: The Time of the Great Giving (1995)\tV\tDrama\n"
             "1635\tTwo Friends\t1986\tDrama\n")  # fmt: skip
    items = formats.grouplens_items(grouplens)
    assert items == formats.wheel_items(wheel)
    assert items.decode().splitlines()[1:] == [
        "23\tTaxi Driver (1976)\t1976\tDrama", "267\tunknown\t\tunknown",
        "1412\tLand Before Time III: The Time of the Great Giving (1995) (V)\t1995\tDrama",
        "1635\tTwo Friends (1986)\t1986\tDrama"]  # fmt: skip


def test_the_manifest_records_every_file_and_each_is_verified(tmp_path, ratings, offline_pip):
    (tmp_path / f"{SYNTHETIC}.zip").write_bytes(grouplens_zip(ratings))
    folder = ensure_dataset(tmp_path, SYNTHETIC)
    manifest = json.loads((folder / "SOURCE.json").read_text())["sha256"]
    assert manifest == {name: sha256_file(folder / name) for name in download.DATA_FILES}
    (folder / "users.tsv").write_bytes((folder / "users.tsv").read_bytes().replace(b"M", b"F"))
    with pytest.raises(DataError, match=r"checksum mismatch for .*users\.tsv"):
        load_movielens(tmp_path, SYNTHETIC)


def test_a_source_whose_items_differ_from_the_pinned_hash_fails_and_the_next_is_tried(
    tmp_path, ratings, monkeypatch, offline_pip
):
    good = grouplens_zip(ratings)
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / f"{SYNTHETIC}.zip").write_bytes(good)
    items = (ensure_dataset(tmp_path / "reference", SYNTHETIC) / "items.tsv").read_bytes()
    spec = download.DatasetSpec(**{**download.DATASETS[SYNTHETIC].__dict__,
                                   "items_sha256": download.sha256_bytes(items)})  # fmt: skip
    monkeypatch.setitem(download.DATASETS, SYNTHETIC, spec)
    edited = good.replace(b"Film \xe9 7 (1995)", b"Film \xe9 7 (1996)")
    (tmp_path / f"{SYNTHETIC}.zip").write_bytes(edited)
    serve_download(monkeypatch, good)
    folder = ensure_dataset(tmp_path, SYNTHETIC)
    assert (folder / "items.tsv").read_bytes() == items
    assert spec.grouplens_url in (folder / "SOURCE.json").read_text()


def test_force_over_a_damaged_copy_keeps_it_aside(tmp_path, ratings, offline_pip):
    (tmp_path / f"{SYNTHETIC}.zip").write_bytes(grouplens_zip(ratings))
    folder = ensure_dataset(tmp_path, SYNTHETIC)
    (folder / "items.tsv").write_text("edited by hand\n")
    ensure_dataset(tmp_path, SYNTHETIC, force=True)
    (aside,) = tmp_path.glob(f"{SYNTHETIC}.damaged-*")
    assert (aside / "items.tsv").read_text() == "edited by hand\n"
    load_movielens(tmp_path, SYNTHETIC)  # the new copy verifies
