"""Fault injection for the data stage: damaged or edited files, damaged sources, an unwritable
folder, a damaged manifest, leftovers of killed downloads. Each case runs
``python -m recsys.data download`` in this process and expects one ``error:`` line that names
the problem and a fix that works when followed literally, with the files left as they were.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import shlex
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

from recsys.data import download
from recsys.data.__main__ import main
from recsys.files import _host
from tests.conftest import (
    SYNTHETIC,
    grouplens_zip,
    make_ratings,
    ratings_bytes,
    serve_download,
    synthetic_spec,
)
from tests.faults.harness import failing_cli


@pytest.fixture
def ratings(monkeypatch) -> bytes:
    """The synthetic ratings, registered as release ``ml-synthetic`` (nothing written yet)."""
    data = ratings_bytes(make_ratings())
    monkeypatch.setitem(download.DATASETS, SYNTHETIC, synthetic_spec(data))
    return data


def download_argv(data_dir: Path, *extra: str) -> list[str]:
    return ["download", "--data-dir", str(data_dir), "--name", SYNTHETIC, *extra]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ratings_of(data_dir: Path) -> bytes:
    return (data_dir / SYNTHETIC / download.RATINGS_FILE).read_bytes()


def fix_command(line: str) -> list[str]:
    """The argv of the ``python -m recsys.data ...`` command quoted in an error line."""
    words = shlex.split(line.split("`")[1])
    assert words[:3] == ["python", "-m", "recsys.data"], line
    return words[3:]


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def edit_year(items: bytes) -> bytes:
    return items.replace(b"Movie 7 (1957)\t1957", b"Movie 7 (1958)\t1958")


EDITS = {
    "items.tsv edited (a year)": (download.ITEMS_FILE, edit_year),
    "users.tsv edited (an age)": (download.USERS_FILE,
                                  lambda users: users.replace(b"\n7\t25\t", b"\n7\t52\t")),
    "items.tsv damaged (bytes)": (download.ITEMS_FILE,
                                  lambda items: items[:999] + b"\xff\xfe\x00" + items[1002:]),
    "items.tsv truncated": (download.ITEMS_FILE, lambda items: items[: len(items) // 2]),
}  # fmt: skip


@pytest.mark.parametrize("case", EDITS)
def test_an_edited_or_damaged_file_is_a_checksum_error_naming_it(case, synthetic_data, capsys):
    name, edit = EDITS[case]
    path = synthetic_data / SYNTHETIC / name
    expected = sha256(path)
    edited = edit(path.read_bytes())
    assert edited != path.read_bytes()
    path.write_bytes(edited)
    line = failing_cli(capsys, main, download_argv(synthetic_data), protect=(synthetic_data,))
    assert f"checksum mismatch for {path}: expected SHA-256 {expected}, got {sha256(path)}" in line
    assert fix_command(line) == download_argv(synthetic_data.absolute(), "--force")


def test_a_pinned_file_is_checked_even_when_the_manifest_was_edited_to_match(
    synthetic_data, capsys, monkeypatch
):
    folder = synthetic_data / SYNTHETIC
    pinned = sha256(folder / download.ITEMS_FILE)
    spec = download.DATASETS[SYNTHETIC]
    pinned_spec = download.DatasetSpec(**{**spec.__dict__, "items_sha256": pinned})
    monkeypatch.setitem(download.DATASETS, SYNTHETIC, pinned_spec)
    items = folder / download.ITEMS_FILE
    items.write_bytes(edit_year(items.read_bytes()))
    download.write_manifest(folder, spec, "a careful editor")
    line = failing_cli(capsys, main, download_argv(synthetic_data), protect=(synthetic_data,))
    assert f"expected SHA-256 {pinned}" in line


def test_damaged_content_without_a_manifest_is_a_parse_error_naming_the_file(
    synthetic_data, capsys
):
    folder = synthetic_data / SYNTHETIC
    (folder / download.SOURCE_FILE).unlink()  # a copy from before manifests: nothing to compare
    items = folder / download.ITEMS_FILE
    items.write_bytes(items.read_bytes() + b"201\tMovie \xe9\t1999\tDrama\n")
    damaged = items.read_bytes()
    (synthetic_data / f"{SYNTHETIC}.zip").write_bytes(grouplens_zip(ratings_of(synthetic_data)))
    line = failing_cli(capsys, main, download_argv(synthetic_data), protect=(synthetic_data,))
    assert f"{items} cannot be parsed (UnicodeDecodeError" in line
    assert fix_command(line) == download_argv(synthetic_data.absolute(), "--force")

    assert main(fix_command(line)) == 0  # the copy was never verified: it is kept, not deleted
    (aside,) = synthetic_data.glob(f"{SYNTHETIC}.damaged-*")
    assert (aside / download.ITEMS_FILE).read_bytes() == damaged


def rezipped(archive: bytes, compression=zipfile.ZIP_STORED, **edits) -> bytes:
    """``archive`` written again, member ``u_item=f`` replaced by ``f(its bytes)``."""
    source = zipfile.ZipFile(io.BytesIO(archive))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as target:
        for name in source.namelist():
            edit = edits.get(name.rsplit("/", 1)[1].replace(".", "_"), lambda data: data)
            target.writestr(name, edit(source.read(name)))
    return buffer.getvalue()


def deflated(archive: bytes) -> bytes:
    return rezipped(archive, zipfile.ZIP_DEFLATED)


def broken_deflate(archive: bytes) -> bytes:
    """``archive`` (deflated) with 40 bytes inside u.item's compressed stream inverted."""
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(f"{SYNTHETIC}/u.item")
    start = info.header_offset + 30 + len(info.filename) + 100
    inverted = bytes(b ^ 0xFF for b in archive[start : start + 40])
    return archive[:start] + inverted + archive[start + 40 :]


DAMAGED_ZIPS = {
    "truncated": (lambda good: good[: len(good) // 2], "not a valid zip"),
    "member's deflate stream broken": (lambda good: broken_deflate(deflated(good)),
                                       "u.item damaged in the archive (Error -3 while"),
    "member's CRC wrong": (lambda good: good.replace(b"Film \xe9 7 (1995)", b"Film \xe9 7 (1996)"),
                           "u.item damaged in the archive (Bad CRC-32"),
    "u.item line cut short": (lambda good: rezipped(good, u_item=lambda data: data[:-20] + b"\n"),
                              "u.item damaged (ValueError: zip() argument 2 is shorter"),
    "u.data not the published one": (lambda good: rezipped(good, u_data=lambda data: data[:-40]),
                                     "checksum mismatch for ml-synthetic/u.data"),
}  # fmt: skip


@pytest.mark.parametrize("case", DAMAGED_ZIPS)
def test_a_damaged_hand_placed_zip_is_reported_and_the_next_source_used(
    case, tmp_path, ratings, caplog, monkeypatch, offline_pip
):
    damage, reason = DAMAGED_ZIPS[case]
    good = grouplens_zip(ratings)
    manual = tmp_path / f"{SYNTHETIC}.zip"
    manual.write_bytes(damage(good))
    serve_download(monkeypatch, good)
    with caplog.at_level(logging.INFO, logger="recsys.data.download"):
        assert main(download_argv(tmp_path)) == 0
    assert f"source {manual} failed: " in caplog.text and reason in caplog.text
    source = json.loads((tmp_path / SYNTHETIC / download.SOURCE_FILE).read_text())["source"]
    assert source == download.DATASETS[SYNTHETIC].grouplens_url
    assert ratings_of(tmp_path) == ratings


def test_when_every_source_fails_the_error_lists_each_and_why(
    tmp_path, ratings, capsys, offline_pip
):
    manual = tmp_path / f"{SYNTHETIC}.zip"
    manual.write_bytes(broken_deflate(deflated(grouplens_zip(ratings))))
    line = failing_cli(capsys, main, download_argv(tmp_path), protect=(tmp_path,))
    assert f"{manual}: {SYNTHETIC}/u.item damaged in the archive (Error -3" in line
    assert "http://127.0.0.1:9/unreachable.zip: unreachable" in line
    assert "pip download recsys-test-no-such-package==0.0.0: pip download failed" in line
    assert fix_command(line) == download_argv(tmp_path.absolute())
    assert not (tmp_path / SYNTHETIC).exists()


@pytest.fixture
def unwritable(monkeypatch):
    """Creating the temporary folder fails as in a read-only folder (chmod does not stop root)."""

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/.tmp")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)


def test_a_read_only_data_folder_is_one_line_naming_data_dir(tmp_path, ratings, capsys, unwritable):
    manual = tmp_path / f"{SYNTHETIC}.zip"
    manual.write_bytes(grouplens_zip(ratings))
    line = failing_cli(capsys, main, download_argv(tmp_path), protect=(tmp_path,))
    assert line == (f"error: the data folder {tmp_path} is not writable (Permission denied); "
                    f"make it writable, or set data.dir=<a writable folder> (--data-dir), and "
                    f"move {manual} there")  # fmt: skip


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a read-only folder anyway")
def test_a_really_read_only_data_folder(tmp_path, ratings, capsys):
    (tmp_path / f"{SYNTHETIC}.zip").write_bytes(grouplens_zip(ratings))
    tmp_path.chmod(0o555)
    try:
        line = failing_cli(capsys, main, download_argv(tmp_path), protect=(tmp_path,))
    finally:
        tmp_path.chmod(0o755)
    assert "is not writable" in line and "data.dir=<a writable folder>" in line


@pytest.mark.parametrize("damage", ["truncated", "not a manifest"])
def test_a_damaged_manifest_is_one_line(damage, synthetic_data, capsys):
    manifest = synthetic_data / SYNTHETIC / download.SOURCE_FILE
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2] if damage == "truncated" else "[1, 2]\n")
    line = failing_cli(capsys, main, download_argv(synthetic_data), protect=(synthetic_data,))
    assert line.startswith(f"error: {manifest} is damaged (")
    assert fix_command(line) == download_argv(synthetic_data.absolute(), "--force")


def test_the_checksum_fix_followed_literally_repairs_the_copy_in_use(
    tmp_path, ratings, capsys, monkeypatch, offline_pip
):
    data_dir = tmp_path / "elsewhere"  # not the default "data", and not the working directory
    monkeypatch.chdir(tmp_path)
    data_dir.mkdir()
    (data_dir / f"{SYNTHETIC}.zip").write_bytes(grouplens_zip(ratings))
    assert main(download_argv(Path("elsewhere"))) == 0
    damaged = ratings[:-10] + b"0\t0\t0\t0\n"
    (data_dir / SYNTHETIC / download.RATINGS_FILE).write_bytes(damaged)
    line = failing_cli(capsys, main, download_argv(Path("elsewhere")), protect=(data_dir,))
    assert f"--data-dir {data_dir} " in line

    assert main(fix_command(line)) == 0
    assert ratings_of(data_dir) == ratings
    (aside,) = data_dir.glob(f"{SYNTHETIC}.damaged-*")  # the damaged copy, kept
    assert (aside / download.RATINGS_FILE).read_bytes() == damaged
    assert f"moves this one aside to {data_dir / SYNTHETIC}.damaged-<time>" in line


def test_a_killed_downloads_leftover_is_removed_by_the_next_download(
    tmp_path, ratings, caplog, offline_pip
):
    (tmp_path / f"{SYNTHETIC}.zip").write_bytes(grouplens_zip(ratings))
    stale = tmp_path / f".{SYNTHETIC}.tmp-{_host()}-{dead_pid()}-abcd1234"
    live = tmp_path / f".{SYNTHETIC}.tmp-{_host()}-{os.getpid()}-wxyz9876"
    unrelated = tmp_path / ".something"
    for folder in (stale, live, unrelated):
        folder.mkdir()
        (folder / download.RATINGS_FILE).write_bytes(ratings[:100])
    with caplog.at_level(logging.INFO, logger="recsys.files"):
        assert main(download_argv(tmp_path)) == 0
    assert not stale.exists() and str(stale) in caplog.text
    assert live.exists() and unrelated.exists()


@pytest.mark.parametrize(("error", "advice"), [
    (OSError(errno.ENOSPC, "No space left on device"), "free some space"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "free some space"),
    (FileExistsError(errno.EEXIST, "File exists"), "a file is in the way of the folder"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory"), "a file is in the way of the folder"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), "a folder you can write"),
    (PermissionError(errno.EACCES, "Permission denied"), "is not writable (Permission denied)"),
])  # fmt: skip
def test_a_data_folder_that_cannot_be_written_gets_the_advice_for_its_cause(error, advice):
    message = str(download._not_writable(Path("/somewhere/ml-100k"), error))
    assert advice in message and "data.dir=" in message
    assert ("free some space" in message) == (error.errno in (errno.ENOSPC, errno.EDQUOT))
