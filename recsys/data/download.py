"""Obtain MovieLens and verify it before use.

The data folder is ``$RECSYS_DATA_DIR`` if set, else the user's cache folder
(``~/.cache/recsys/data`` on Linux), so that every working directory finds the same copy; any
folder can be given (``data.dir``, ``--data-dir``). Sources, tried in order until one gives
files that verify:

1. a verified copy already in the data folder (``<data_dir>/<name>/``);
2. a zip put in the data folder by hand (``<data_dir>/<name>.zip``), as GroupLens ships it;
3. the copy or the zip in ``data/`` of the working directory, recsys' data folder before the
   cache folder became the default (verified, then copied: the original stays as it is);
4. the official GroupLens zip, downloaded with pooch (retried, progress bar, kept in
   ``<data_dir>/downloads/`` so that ``--force`` needs no second download);
5. ML-100K only: the unmodified copy inside a pinned PyPI wheel (``recbole==1.2.1`` carries it
   under ``recbole/dataset_example/``), fetched with ``pip download --no-deps`` and read out of
   the zip; the wheel's own SHA-256 is checked too. recbole is never installed or imported.

A zip is checked against the MD5 GroupLens publishes for it (ML-32M publishes none: the MD5s
its ``checksums.txt`` lists for the members are checked instead). The ratings are kept byte for
byte as GroupLens ships them (``ratings.tsv`` = ML-100K's ``u.data``, ``ratings.dat`` for
ML-1M/10M, ``ratings.csv`` for ML-20M and later); users (ML-100K and ML-1M only) and items are
normalised to one tab-separated UTF-8 format. ML-100K's three files have pinned SHA-256s, byte
for byte the same from the GroupLens zip and from the wheel (the year is the film's, from its
title). ``SOURCE.json`` records the source and the SHA-256 of every file (the manifest that
checks the releases without pinned values: recorded on first verified use), and every file is
verified before each use. The folder is built in a temporary directory and renamed into place,
so an interrupted download never leaves a folder that looks complete; ``--force`` over a copy
that does not verify keeps that copy aside instead of deleting it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from recsys.data.formats import (
    ML_1M,
    ML_10M,
    ML_32M,
    ML_100K,
    ML_CSV,
    Layout,
    wheel_items,
    wheel_users,
)
from recsys.errors import DataError
from recsys.files import atomic_path, atomic_write_text, sha256_file

log = logging.getLogger(__name__)

RATINGS_FILE = "ratings.tsv"  # ML-100K's (the others keep GroupLens' name: ratings.dat, .csv)
USERS_FILE = "users.tsv"
ITEMS_FILE = "items.tsv"
SOURCE_FILE = "SOURCE.json"
DATA_FILES = (RATINGS_FILE, USERS_FILE, ITEMS_FILE)  # a release in ML-100K's layout
DOWNLOADS = "downloads"  # <data_dir>/downloads/<name>.zip: what pooch fetched
DATA_DIR_ENV = "RECSYS_DATA_DIR"
EARLIER_DATA_DIR = Path("data")  # the default before the cache folder, relative to the cwd
DOWNLOAD_RETRIES = 2  # further tries of a failed download (pooch waits 1 s, then 2 s)
GROUPLENS = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a MovieLens release comes from and how to recognise an unmodified copy.

    ``zip_md5`` is the MD5 GroupLens publishes for the zip; ``zip_root`` the zip's folder (the
    name unless GroupLens chose another). ``ratings_sha256`` pins the ratings file; without it
    (every release but ML-100K) the ratings are checked against the manifest written when the
    zip verified. ``users_sha256`` and ``items_sha256`` pin our normalised files likewise.
    ``outdated_items_sha256`` lists the ``items.tsv`` of earlier normalisations: accepted with a
    warning to rebuild. The wheel fields name ML-100K's fallback source.
    """

    name: str
    ratings_sha256: str | None
    grouplens_url: str
    wheel_requirement: str | None = None
    wheel_sha256: str | None = None
    wheel_folder: str | None = None
    users_sha256: str | None = None
    items_sha256: str | None = None
    outdated_items_sha256: tuple[str, ...] = ()
    layout: Layout = field(default=ML_100K)
    zip_md5: str | None = None
    zip_root: str | None = None

    @property
    def files(self) -> tuple[str, ...]:
        """Our files of this release: the ratings, users (if it has them) and items."""
        users = (USERS_FILE,) if self.layout.users_member else ()
        return (self.layout.ratings_file, *users, ITEMS_FILE)

    @property
    def ratings_file(self) -> str:
        return self.layout.ratings_file

    def pinned(self) -> dict[str, str]:
        """``{file: SHA-256}`` of the files whose hash is known in advance."""
        hashes = {self.ratings_file: self.ratings_sha256, USERS_FILE: self.users_sha256,
                  ITEMS_FILE: self.items_sha256}  # fmt: skip
        return {file: sha for file, sha in hashes.items() if sha and file in self.files}


def _release(name: str, layout: Layout, zip_md5: str | None, zip_root: str | None = None):
    return DatasetSpec(name=name, ratings_sha256=None, grouplens_url=f"{GROUPLENS}/{name}.zip",
                       layout=layout, zip_md5=zip_md5, zip_root=zip_root)  # fmt: skip


DATASETS = {
    "ml-100k": DatasetSpec(
        name="ml-100k",
        ratings_sha256="06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        grouplens_url=f"{GROUPLENS}/ml-100k.zip",
        wheel_requirement="recbole==1.2.1",
        wheel_sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        wheel_folder="recbole/dataset_example/ml-100k",
        # the same bytes from GroupLens' zip (u.user, u.item of 19-Jul-2000) and from the wheel
        users_sha256="d307879922714236e165fd2bc58ed81651098a488a5090e2de5738e81f2d74ae",
        items_sha256="9ecc3a4710244dceb622debae0bd37fd543bdc5e57c0a0db0366ffd3bd82506c",
        outdated_items_sha256=(  # recsys before the zip and the wheel agreed:
            "751de1450b622fbcacd310f918ad38d2e485e7bc3168a5d678b059545690a0f4",  # zip: video years
            "0306a08a38c556bb35cc7dcd3a001a2ae397b602684ac332376c4239e80732a8",  # wheel: 1412 lost
        ),
        zip_md5="0e33842e24a9c977be4e0107933c0723",
    ),
    # the MD5s GroupLens publishes beside each zip (<url>.md5); ML-32M's are inside it
    "ml-1m": _release("ml-1m", ML_1M, "c4d9eecfca2ab87c1945afe126590906"),
    "ml-10m": _release("ml-10m", ML_10M, "ce571fd55effeba0271552578f2648bd", "ml-10M100K"),
    "ml-20m": _release("ml-20m", ML_CSV, "cd245b17a1ae2cc31bb14903e1204af3"),
    "ml-25m": _release("ml-25m", ML_CSV, "6b51fb2759a8657d3bfcbfc42b592ada"),
    "ml-32m": _release("ml-32m", ML_32M, None),
}


@dataclass(frozen=True)
class RawFiles:
    """The three files of a release in our normalised format, as bytes (the wheel's)."""

    ratings: bytes
    users: bytes
    items: bytes


def default_data_dir() -> str:
    """``$RECSYS_DATA_DIR`` if set, else the user's cache folder (``~/.cache/recsys/data`` on
    Linux, ``platformdirs.user_cache_dir``), as ``data.dir`` defaults in ``conf/data/``."""
    import platformdirs

    return os.environ.get(DATA_DIR_ENV) or str(Path(platformdirs.user_cache_dir("recsys"), "data"))


def dataset_spec(name: str) -> DatasetSpec:
    """Look up a supported dataset by name."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5_file(path: str | os.PathLike) -> str:
    """Hex MD5 of a file (GroupLens publishes MD5s), read in 1 MiB blocks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def dataset_dir(data_dir: str | Path, name: str) -> Path:
    return Path(data_dir) / name


def download_command(data_dir: str | Path, name: str, *, force: bool = False) -> str:
    """The command that obtains ``name`` into ``data_dir`` (absolute), quoted to paste."""
    words = ["python", "-m", "recsys.data", "download", "--data-dir",
             str(Path(data_dir).absolute()), "--name", name] + ["--force"] * force  # fmt: skip
    return f"`{shlex.join(words)}`"


def repair_advice(folder: Path) -> str:
    """How to replace the damaged copy in ``folder``, and what happens to it."""
    command = download_command(folder.parent, folder.name, force=True)
    return (f"fix: run {command}; it fetches and verifies a fresh copy, then moves this one "
            f"aside to {folder.absolute()}.damaged-<time> (nothing is deleted)")  # fmt: skip


def verify_dataset(folder: Path, spec: DatasetSpec) -> dict[str, str]:
    """Check every file of the copy in ``folder`` against its expected SHA-256.

    Expected values are the pinned ones of ``spec``, else those of the folder's manifest
    (``SOURCE.json``); a users or items file with neither is only logged as unverified (an
    ML-100K copy from before manifests), ratings with neither are an error.

    Parameters
    ----------
    folder
        ``<data_dir>/<name>``.
    spec
        The dataset's description.

    Returns
    -------
    dict
        ``{file name: SHA-256}`` of the files that were verified (all of ``spec.files``,
        unless the copy predates manifests and the dataset pins only some).

    Raises
    ------
    DataError
        A file is missing or its SHA-256 differs (names the file, both hashes and the command
        that repairs the copy), or the manifest is damaged.
    """
    expected = {**read_manifest(folder), **spec.pinned()}
    verified = {}
    for file in spec.files:
        path = folder / file
        if not path.is_file():
            raise DataError(f"{path} is missing: the copy in {folder} is incomplete; "
                            f"{repair_advice(folder)}")  # fmt: skip
        actual = verified[file] = sha256_file(path)
        if expected.get(file) is None and file == spec.ratings_file:
            raise DataError(f"{path} cannot be verified: {folder / SOURCE_FILE}, which records "
                            f"its SHA-256, is missing; {repair_advice(folder)}")  # fmt: skip
        if expected.get(file) is None:
            log.warning("%s not verified: no SHA-256 pinned or in %s", path, SOURCE_FILE)
            del verified[file]
        elif actual in spec.outdated_items_sha256 and file == ITEMS_FILE:
            log.warning("%s is in the form of an older recsys (other years or titles); "
                        "%s rebuilds it", path, download_command(folder.parent, spec.name,
                                                                 force=True))  # fmt: skip
        elif actual != expected[file]:
            raise DataError(
                f"checksum mismatch for {path}: expected SHA-256 {expected[file]}, got {actual}; "
                f"the file is damaged or was edited; {repair_advice(folder)}"
            )
    return verified


def read_manifest(folder: Path) -> dict[str, str]:
    """``{file name: SHA-256}`` recorded in ``folder/SOURCE.json``; empty if there is none.

    Raises
    ------
    DataError
        ``SOURCE.json`` is not valid JSON or not of our form.
    """
    path = folder / SOURCE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        damage = _one_line(error)
        raise DataError(f"{path} is damaged ({damage}); {repair_advice(folder)}") from None
    hashes = record.get("sha256", {}) if isinstance(record, dict) else None
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        raise DataError(f"{path} is damaged (not a recsys manifest); {repair_advice(folder)}")
    return hashes


def write_manifest(folder: Path, spec: DatasetSpec, source: str) -> dict[str, str]:
    """Record the source and the SHA-256 of every data file in ``folder/SOURCE.json``.

    Parameters
    ----------
    folder
        A complete copy (the files are hashed as they are).
    spec
        The dataset's description.
    source
        Where the files came from, in words.

    Returns
    -------
    dict
        ``{file name: SHA-256}`` as recorded.
    """
    hashes = {file: sha256_file(folder / file) for file in spec.files}
    record = {
        "dataset": spec.name,
        "source": source,
        "ratings_sha256": hashes[spec.ratings_file],
        "sha256": hashes,
        "obtained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(folder / SOURCE_FILE, json.dumps(record, indent=2) + "\n")
    return hashes


def ensure_dataset(data_dir: str | Path, name: str = "ml-100k", *, force: bool = False) -> Path:
    """Return the folder of a verified copy of ``name``, obtaining it first if needed.

    Parameters
    ----------
    data_dir
        Folder for downloaded and derived data.
    name
        Dataset name (see ``DATASETS``).
    force
        Fetch again even if a copy is present; the old copy is replaced only once the new one
        is complete and verified, and kept aside as ``<name>.damaged-<time>`` if it does not
        verify.

    Raises
    ------
    DataError
        The cached copy is corrupt (names the file, both hashes and the repair command), no
        source gave a verified copy (lists every source and why, and where to put the zip by
        hand), or the data folder is not writable.
    """
    spec = dataset_spec(name)
    target = dataset_dir(data_dir, name)
    if (target / spec.ratings_file).exists() and not force:
        verify_dataset(target, spec)
        return target

    failures = []
    for source, unpack in _sources(spec, Path(data_dir)):
        try:
            _install(target, unpack, spec, source)
        except OSError as error:  # writing; a source's read errors are DataErrors
            raise _not_writable(target, error) from None
        except DataError as error:
            failures.append(f"{source}: {error}")
            log.info("source %s failed: %s", source, error)
            continue
        log.info("%s obtained from %s into %s", name, source, target)
        return target
    manual = Path(data_dir) / f"{name}.zip"
    raise DataError(
        f"could not obtain {name}; tried: {'; '.join(failures)}. Fix: download "
        f"{spec.grouplens_url} on a machine with internet, put it at {manual}, and run "
        f"{download_command(data_dir, name, force=force)}"
    )


Unpack = Callable[[Path], None]  # writes a release's files into the folder it is given


def _sources(spec: DatasetSpec, data_dir: Path) -> Iterator[tuple[str, Unpack]]:
    manual_zip = data_dir / f"{spec.name}.zip"
    yield str(manual_zip), lambda folder: _unpack_zip(_local_zip(manual_zip), spec, folder)
    if EARLIER_DATA_DIR.resolve() != data_dir.resolve():
        earlier = EARLIER_DATA_DIR.absolute() / spec.name
        yield (f"{earlier} (the earlier default data folder)",
               lambda folder: _copy_verified(earlier, spec, folder))  # fmt: skip
        earlier_zip = earlier.with_name(f"{spec.name}.zip")
        yield str(earlier_zip), lambda folder: _unpack_zip(_local_zip(earlier_zip), spec, folder)
    yield spec.grouplens_url, lambda folder: _unpack_download(spec, data_dir, folder)
    if spec.wheel_requirement is not None:
        yield (f"pip download {spec.wheel_requirement}",
               lambda folder: _write_raw(folder, _read_wheel(spec)))  # fmt: skip


def _copy_verified(source: Path, spec: DatasetSpec, folder: Path) -> None:
    """Copy the release's files from another data folder's copy, verified there first (its
    pinned SHA-256s, else its manifest); the source is only read."""
    if not (source / spec.ratings_file).is_file():
        raise DataError("not present")
    verify_dataset(source, spec)
    for file in spec.files:
        shutil.copyfile(source / file, folder / file)


def _local_zip(path: Path) -> Path:
    if not path.exists():
        raise DataError("not present")
    return path


def _unpack_download(spec: DatasetSpec, data_dir: Path, folder: Path) -> None:
    try:
        path = _download(spec, data_dir)
    except DataError:
        with contextlib.suppress(OSError):  # the folder pooch made, unless it holds something
            (data_dir / DOWNLOADS).rmdir()
        raise
    try:
        _unpack_zip(path, spec, folder)
    except DataError as error:  # our own download, not one placed by hand: fetch anew next time
        path.unlink(missing_ok=True)
        raise DataError(f"{error} (the download was removed)") from None


def _pooch():
    """pooch, its messages (a retry) sent to this module's log: its own handler writes to the
    ``sys.stderr`` of the moment pooch was imported, which may be closed since."""
    import pooch

    class ToModuleLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log.log(record.levelno, "pooch: %s", record.getMessage())

    pooch.get_logger().handlers[:] = [ToModuleLog()]
    return pooch


def _innermost(error: BaseException) -> str:
    """The innermost reason of a requests error, which nests urllib3's ("Failed to resolve
    'files.grouplens.org' (...)", "Failed to establish a new connection: ... refused")."""
    while True:
        inner = getattr(error, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in error.args[::-1] if isinstance(a, BaseException)), None)
        if inner is None:
            return _one_line(error).split(": ", 1)[-1]
        error = inner


def _download(spec: DatasetSpec, data_dir: Path) -> Path:
    """GroupLens' zip in ``<data_dir>/downloads/`` (pooch: streamed to a temporary file, MD5
    checked, then renamed; a copy already there with the right MD5 is not fetched again)."""
    import requests

    fname = f"{spec.name}.zip"
    log.info("fetching %s into %s (unless a verified copy is there)", spec.grouplens_url,
             data_dir / DOWNLOADS)
    pooch = _pooch()
    fetcher = pooch.create(
        path=data_dir / DOWNLOADS, base_url="", retry_if_failed=DOWNLOAD_RETRIES,
        registry={fname: f"md5:{spec.zip_md5}" if spec.zip_md5 else None},
        urls={fname: spec.grouplens_url},
    )  # fmt: skip
    try:
        return Path(fetcher.fetch(fname, progressbar=sys.stderr.isatty()))
    except requests.exceptions.ChunkedEncodingError as error:
        raise DataError(f"partial download (the connection closed early: {_one_line(error)})") \
            from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
        raise DataError(f"unreachable ({_innermost(error)})") from None
    except requests.exceptions.RequestException as error:  # an HTTP error status, a bad URL
        raise DataError(f"download failed ({_one_line(error)})") from None
    except ValueError as error:  # pooch: the download's MD5 differs
        raise DataError(f"the download does not verify ({_one_line(error)})") from None


# what reading a damaged archive raises: a bad CRC, a broken deflate stream, a cut-off member
DAMAGED_ZIP = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _open_zip(source: Path | bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except DAMAGED_ZIP:
        raise DataError("not a valid zip (corrupt or partial download)") from None


def _member(archive: zipfile.ZipFile, path: str) -> bytes:
    try:
        return archive.read(path)
    except KeyError:
        raise DataError(f"{path} missing from the archive") from None
    except DAMAGED_ZIP as error:
        raise DataError(f"{path} damaged in the archive ({_one_line(error)})") from None


def _normalised(normalise, archive: zipfile.ZipFile, path: str, encodings: tuple[str, ...],
                listed_md5: dict[str, str]) -> bytes:  # fmt: skip
    """``normalise`` applied to member ``path`` decoded with the first of ``encodings`` that
    fits, its MD5 checked if ``listed_md5`` has one; damaged content is a DataError."""
    data = _member(archive, path)
    _check_listed_md5(md5_bytes(data), path, listed_md5)
    for encoding in encodings[:-1]:
        with contextlib.suppress(UnicodeDecodeError):
            data.decode(encoding)
            break
    else:
        encoding = encodings[-1]
    try:
        return normalise(data.decode(encoding))
    except (ValueError, IndexError) as error:  # UnicodeDecodeError is a ValueError
        raise DataError(f"{path} damaged ({type(error).__name__}: {_one_line(error)})") from None


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _check_listed_md5(actual: str, path: str, listed_md5: dict[str, str]) -> None:
    expected = listed_md5.get(PurePosixPath(path).name)
    if expected is not None and actual != expected:
        raise DataError(f"checksum mismatch for {path}: expected MD5 {expected} (as the zip's "
                        f"checksums list says), got {actual}")  # fmt: skip


def _extract(archive: zipfile.ZipFile, path: str, target: Path,
             listed_md5: dict[str, str]) -> str:  # fmt: skip
    """Copy member ``path`` to ``target`` byte for byte in 1 MiB blocks (ML-32M's ratings are
    877 MB); return its SHA-256, its MD5 checked if ``listed_md5`` has one."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    try:
        source = archive.open(path)
    except KeyError:
        raise DataError(f"{path} missing from the archive") from None
    except DAMAGED_ZIP as error:
        raise DataError(f"{path} damaged in the archive ({_one_line(error)})") from None
    with source, open(target, "wb") as out:  # an OSError writing is the data folder's
        while True:
            try:
                block = source.read(1 << 20)
            except DAMAGED_ZIP as error:
                raise DataError(f"{path} damaged in the archive ({_one_line(error)})") from None
            if not block:
                break
            sha256.update(block)
            md5.update(block)
            out.write(block)
    _check_listed_md5(md5.hexdigest(), path, listed_md5)
    return sha256.hexdigest()


# a line of an MD5 list: md5sum's "<md5>  <file>" (or " *<file>"), or BSD's "MD5 (<file>) = <md5>"
_MD5_LINE = re.compile(r"(?:(?P<md5>[0-9a-fA-F]{32}) [ *](?P<file>.+)"
                       r"|MD5 \((?P<bsd_file>.+)\) = (?P<bsd_md5>[0-9a-fA-F]{32}))")  # fmt: skip


def _listed_md5s(archive: zipfile.ZipFile, path: str, needed: list[str]) -> dict[str, str]:
    """``{member file name: MD5}`` from the checksums member ``path``; every one of
    ``needed`` must be listed."""
    text = _member(archive, path).decode("utf-8", errors="replace")
    listed = {}
    for line in text.splitlines():
        match = _MD5_LINE.fullmatch(line.strip())
        if match:
            name = PurePosixPath((match["file"] or match["bsd_file"]).strip()).name
            listed[name] = (match["md5"] or match["bsd_md5"]).lower()
    missing = [name for name in needed if name not in listed]
    if missing:
        raise DataError(f"{path} lists no MD5 for {', '.join(missing)}")
    return listed


def _unpack_zip(path: Path, spec: DatasetSpec, folder: Path) -> None:
    """Write the release's files into ``folder`` from GroupLens' zip at ``path``: the zip
    checked against its published MD5 (or its members against the MD5s listed inside it), the
    ratings copied byte for byte, users and items normalised."""
    layout, root = spec.layout, spec.zip_root or spec.name
    if spec.zip_md5 is not None:
        actual = _readable(md5_file, path)
        if actual != spec.zip_md5:
            raise DataError(f"checksum mismatch for {path}: expected MD5 {spec.zip_md5} (published "
                            f"by GroupLens), got {actual}: not GroupLens' {spec.name}.zip, or "
                            f"damaged")  # fmt: skip
    with _open_zip(path) as archive:
        listed = {}
        if layout.checksums_member is not None:
            members = [layout.ratings_member, layout.items_member]
            listed = _listed_md5s(archive, f"{root}/{layout.checksums_member}", members)
        ratings = f"{root}/{layout.ratings_member}"
        actual = _extract(archive, ratings, folder / layout.ratings_file, listed)
        if spec.ratings_sha256 is not None and actual != spec.ratings_sha256:
            raise DataError(f"checksum mismatch for {ratings}: expected SHA-256 "
                            f"{spec.ratings_sha256}, got {actual}")  # fmt: skip
        if layout.users_member is not None:
            users = _normalised(layout.normalise_users, archive, f"{root}/{layout.users_member}",
                                layout.encodings, listed)  # fmt: skip
            (folder / USERS_FILE).write_bytes(users)
        items = _normalised(layout.normalise_items, archive, f"{root}/{layout.items_member}",
                            layout.encodings, listed)  # fmt: skip
        (folder / ITEMS_FILE).write_bytes(items)


def _readable(read, path: Path):
    """``read(path)``; a file that cannot be read is a DataError (the source's fault)."""
    try:
        return read(path)
    except OSError as error:
        raise DataError(f"unreadable ({_one_line(error)})") from None


def _check_ratings_bytes(ratings: bytes, spec: DatasetSpec, where: str) -> None:
    actual = sha256_bytes(ratings)
    if actual != spec.ratings_sha256:
        raise DataError(
            f"checksum mismatch for {where}: expected SHA-256 {spec.ratings_sha256}, got {actual}"
        )


def _check_pinned(folder: Path, spec: DatasetSpec) -> None:
    """The normalised users and items of a source against the pinned SHA-256s (before the
    folder is renamed into place; the ratings were checked as they were read)."""
    for file, expected in spec.pinned().items():
        if file == spec.ratings_file:
            continue
        actual = sha256_file(folder / file)
        if actual != expected:
            raise DataError(f"checksum mismatch for {file} normalised from this source: expected "
                            f"SHA-256 {expected}, got {actual}")  # fmt: skip


def _read_wheel(spec: DatasetSpec) -> RawFiles:
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", "--dest", tmp, spec.wheel_requirement,
        ]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise DataError(f"pip failed to run ({error})") from None
        wheels = sorted(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise DataError(f"pip download failed ({last})")
        actual = sha256_file(wheels[0])
        if actual != spec.wheel_sha256:
            raise DataError(
                f"checksum mismatch for {wheels[0].name}: expected SHA-256 {spec.wheel_sha256}, "
                f"got {actual}"
            )
        return _wheel_files(wheels[0].read_bytes(), spec)


def _wheel_files(data: bytes, spec: DatasetSpec) -> RawFiles:
    archive = _open_zip(data)
    folder = f"{spec.wheel_folder}/{spec.name}"
    inter = _member(archive, f"{folder}.inter")
    ratings = inter.partition(b"\n")[2]  # drop the typed header line
    _check_ratings_bytes(ratings, spec, f"{folder}.inter (header dropped)")
    users = _normalised(wheel_users, archive, f"{folder}.user", ("utf-8",), {})
    items = _normalised(wheel_items, archive, f"{folder}.item", ("utf-8",), {})
    return RawFiles(ratings, users, items)


def _write_raw(folder: Path, files: RawFiles) -> None:
    for file, data in zip(DATA_FILES, (files.ratings, files.users, files.items), strict=True):
        (folder / file).write_bytes(data)


def _install(target: Path, unpack: Unpack, spec: DatasetSpec, source: str) -> None:
    """``unpack`` into a temporary folder beside ``target``, check it, record its manifest and
    rename it into place; a DataError of the source leaves ``target`` as it was."""
    backup = _aside_if_damaged(target, spec)
    with atomic_path(target, directory=True, backup=backup) as tmp:
        unpack(tmp)
        _check_pinned(tmp, spec)
        write_manifest(tmp, spec, source)
    if backup is not None:
        log.warning("the previous copy, which did not verify, is kept as %s", backup)


def _aside_if_damaged(target: Path, spec: DatasetSpec) -> Path | None:
    """Where to keep an existing copy that does not verify completely (None: there is none, or
    it is a verified copy, which a download reproduces)."""
    if not target.exists():
        return None
    try:
        if set(verify_dataset(target, spec)) == set(spec.files):
            return None
    except DataError:
        pass
    aside = target.with_name(f"{target.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    return aside.with_name(f"{aside.name}-{os.getpid()}") if aside.exists() else aside


def _not_writable(target: Path, error: OSError) -> DataError:
    folder = target.parent
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return DataError(f"could not write {target} ({_one_line(error)}); free some space or "
                         f"set data.dir=<another folder> (--data-dir) and run again")  # fmt: skip
    if error.errno in (errno.EEXIST, errno.ENOTDIR):  # a file where a folder belongs
        return DataError(f"data.dir {folder}: a file is in the way of the folder {target} "
                         f"({_one_line(error)}); set data.dir=<a folder> (--data-dir)")  # fmt: skip
    if not isinstance(error, PermissionError) and error.errno != errno.EROFS:
        return DataError(f"could not write {target} ({_one_line(error)}); set "
                         f"data.dir=<a folder you can write> (--data-dir) and run "
                         f"again")  # fmt: skip
    manual = folder / f"{target.name}.zip"
    move = f", and move {manual} there" if manual.exists() else ""
    return DataError(f"the data folder {folder} is not writable ({error.strerror}); make it "
                     f"writable, or set data.dir=<a writable folder> "
                     f"(--data-dir){move}")  # fmt: skip
