"""Obtain MovieLens and verify it before use.

Sources, tried in order until one gives ratings whose SHA-256 matches the published one:

1. a verified copy already in the data folder (``<data_dir>/<name>/``);
2. a zip put in the data folder by hand (``<data_dir>/<name>.zip``), as GroupLens ships it;
3. the official GroupLens zip, downloaded;
4. the unmodified copy inside a pinned PyPI wheel (``recbole==1.2.1`` carries ML-100K under
   ``recbole/dataset_example/``), fetched with ``pip download --no-deps`` and read out of the
   zip; the wheel's own SHA-256 is checked too. recbole is never installed or imported.

Whatever the source, the ratings are written to ``ratings.tsv`` byte for byte as GroupLens'
``u.data`` and their SHA-256 is checked against the published value; users and items are
normalised to one tab-separated format, byte for byte the same from the GroupLens zip and from the
wheel (the year is the film's, from its title), so their SHA-256s are pinned too. A source whose
files do not match is reported and the next one tried. ``SOURCE.json`` records the source and the
SHA-256 of every file (the manifest that checks datasets without pinned values), and every file
is verified before each use. The folder is built in a temporary directory and renamed into
place, so an interrupted download never leaves a folder that looks complete; ``--force`` over a
copy that does not verify keeps that copy aside instead of deleting it.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import io
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from recsys.errors import DataError
from recsys.files import atomic_path, atomic_write_text, sha256_file

log = logging.getLogger(__name__)

RATINGS_FILE = "ratings.tsv"
USERS_FILE = "users.tsv"
ITEMS_FILE = "items.tsv"
SOURCE_FILE = "SOURCE.json"
DATA_FILES = (RATINGS_FILE, USERS_FILE, ITEMS_FILE)

GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


@dataclass(frozen=True)
class DatasetSpec:
    """Where a MovieLens release comes from and how to recognise an unmodified copy.

    ``users_sha256`` and ``items_sha256`` pin our normalised files; without them those files
    are checked against the manifest written with the copy. ``outdated_items_sha256`` lists the
    ``items.tsv`` of earlier normalisations: accepted with a warning to rebuild.
    """

    name: str
    ratings_sha256: str
    grouplens_url: str
    wheel_requirement: str
    wheel_sha256: str
    wheel_folder: str
    users_sha256: str | None = None
    items_sha256: str | None = None
    outdated_items_sha256: tuple[str, ...] = ()

    def pinned(self) -> dict[str, str]:
        """``{file: SHA-256}`` of the files whose hash is known in advance."""
        hashes = (self.ratings_sha256, self.users_sha256, self.items_sha256)
        return {file: sha for file, sha in zip(DATA_FILES, hashes, strict=True) if sha}


DATASETS = {
    "ml-100k": DatasetSpec(
        name="ml-100k",
        ratings_sha256="06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        grouplens_url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
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
    ),
}


@dataclass(frozen=True)
class RawFiles:
    """The three files of a release in our normalised format, as bytes."""

    ratings: bytes
    users: bytes
    items: bytes


def dataset_spec(name: str) -> DatasetSpec:
    """Look up a supported dataset by name."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
    (``SOURCE.json``); a file with neither is only logged as unverified.

    Parameters
    ----------
    folder
        ``<data_dir>/<name>``.
    spec
        The dataset's description.

    Returns
    -------
    dict
        ``{file name: SHA-256}`` of the files that were verified (all three, unless the copy
        predates manifests and the dataset pins only some).

    Raises
    ------
    DataError
        A file is missing or its SHA-256 differs (names the file, both hashes and the command
        that repairs the copy), or the manifest is damaged.
    """
    expected = {**read_manifest(folder), **spec.pinned()}
    verified = {}
    for file in DATA_FILES:
        path = folder / file
        if not path.is_file():
            raise DataError(f"{path} is missing: the copy in {folder} is incomplete; "
                            f"{repair_advice(folder)}")  # fmt: skip
        actual = verified[file] = sha256_file(path)
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
    hashes = {file: sha256_file(folder / file) for file in DATA_FILES}
    record = {
        "dataset": spec.name,
        "source": source,
        "ratings_sha256": hashes[RATINGS_FILE],
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
    if (target / RATINGS_FILE).exists() and not force:
        verify_dataset(target, spec)
        return target

    failures = []
    for source, fetch in _sources(spec, Path(data_dir)):
        try:
            files = fetch()
            _check_pinned(files, spec)
        except DataError as error:
            failures.append(f"{source}: {error}")
            log.info("source %s failed: %s", source, error)
            continue
        _write_dataset(target, files, spec, source)
        log.info("%s obtained from %s into %s", name, source, target)
        return target
    manual = Path(data_dir) / f"{name}.zip"
    raise DataError(
        f"could not obtain {name}; tried: {'; '.join(failures)}. Fix: download "
        f"{spec.grouplens_url} on a machine with internet, put it at {manual}, and run "
        f"{download_command(data_dir, name, force=force)}"
    )


def _sources(spec: DatasetSpec, data_dir: Path):
    manual_zip = data_dir / f"{spec.name}.zip"
    yield str(manual_zip), lambda: _read_grouplens_zip(_read_local(manual_zip), spec)
    yield spec.grouplens_url, lambda: _read_grouplens_zip(_http_get(spec.grouplens_url), spec)
    yield f"pip download {spec.wheel_requirement}", lambda: _read_wheel(spec)


def _read_local(path: Path) -> bytes:
    if not path.exists():
        raise DataError("not present")
    try:
        return path.read_bytes()
    except OSError as error:
        raise DataError(f"unreadable ({_one_line(error)})") from None


def _http_get(url: str, timeout: float = 30.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            data = response.read()
    except http.client.IncompleteRead as error:
        raise DataError(
            f"partial download ({len(error.partial)} bytes, then the connection closed)"
        ) from None
    except (OSError, http.client.HTTPException) as error:  # URLError, timeouts, resets
        raise DataError(f"unreachable ({error})") from None
    if expected is not None and len(data) != int(expected):
        raise DataError(f"partial download ({len(data)} of {expected} bytes)")
    return data


# what reading a damaged archive raises: a bad CRC, a broken deflate stream, a cut-off member
DAMAGED_ZIP = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except DAMAGED_ZIP:
        raise DataError("not a valid zip (corrupt or partial download)") from None


def _member(archive: zipfile.ZipFile, path: str) -> bytes:
    try:
        return archive.read(path)
    except KeyError:
        raise DataError(f"{path} missing from the archive") from None
    except DAMAGED_ZIP as error:
        raise DataError(f"{path} damaged in the archive ({_one_line(error)})") from None


def _normalised(normalise, archive: zipfile.ZipFile, path: str, encoding: str) -> bytes:
    """``normalise`` applied to the decoded member ``path``; damaged content is a DataError."""
    text = _member(archive, path)
    try:
        return normalise(text.decode(encoding))
    except (ValueError, IndexError) as error:  # UnicodeDecodeError is a ValueError
        raise DataError(f"{path} damaged ({type(error).__name__}: {_one_line(error)})") from None


def _check_ratings_bytes(ratings: bytes, spec: DatasetSpec, where: str) -> None:
    actual = sha256_bytes(ratings)
    if actual != spec.ratings_sha256:
        raise DataError(
            f"checksum mismatch for {where}: expected SHA-256 {spec.ratings_sha256}, got {actual}"
        )


def _check_pinned(files: RawFiles, spec: DatasetSpec) -> None:
    """The normalised files of a source against the pinned SHA-256s (before anything is written)."""
    data = dict(zip(DATA_FILES, (files.ratings, files.users, files.items), strict=True))
    for file, expected in spec.pinned().items():
        actual = sha256_bytes(data[file])
        if actual != expected:
            raise DataError(f"checksum mismatch for {file} normalised from this source: expected "
                            f"SHA-256 {expected}, got {actual}")  # fmt: skip


def _read_grouplens_zip(data: bytes, spec: DatasetSpec) -> RawFiles:
    archive = _open_zip(data)
    root = spec.name
    ratings = _member(archive, f"{root}/u.data")
    _check_ratings_bytes(ratings, spec, f"{root}/u.data")
    users = _normalised(_grouplens_users, archive, f"{root}/u.user", "latin-1")
    items = _normalised(_grouplens_items, archive, f"{root}/u.item", "latin-1")
    return RawFiles(ratings, users, items)


def _grouplens_users(text: str) -> bytes:
    rows = ["user_id\tage\tgender\toccupation\tzip_code"]
    rows += ["\t".join(line.split("|")) for line in text.splitlines() if line]
    return ("\n".join(rows) + "\n").encode("utf-8")


def _title_year(title: str) -> str:
    """The film's year: the last ``(YYYY)`` of a GroupLens title, or ``""``."""
    years = re.findall(r"\((\d{4})\)", title)
    return years[-1] if years else ""


def _grouplens_items(text: str) -> bytes:
    # The year is the film's, from the title, as recbole has it: the release date is often a
    # later video release (Taxi Driver (1976): 16-Feb-1996). Three titles end in a space.
    rows = ["item_id\ttitle\tyear\tgenres"]
    for line in text.splitlines():
        if not line:
            continue
        fields = line.split("|")
        item_id, title, flags = fields[0], fields[1].strip(), fields[5:]
        genres = "|".join(g for g, flag in zip(GENRES, flags, strict=True) if flag == "1")
        rows.append(f"{item_id}\t{title}\t{_title_year(title)}\t{genres}")
    return ("\n".join(rows) + "\n").encode("utf-8")


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
    users = _normalised(_wheel_users, archive, f"{folder}.user", "utf-8")
    items = _normalised(_wheel_items, archive, f"{folder}.item", "utf-8")
    return RawFiles(ratings, users, items)


def _wheel_users(text: str) -> bytes:
    lines = text.splitlines()
    rows = ["user_id\tage\tgender\toccupation\tzip_code"] + [x for x in lines[1:] if x]
    return ("\n".join(rows) + "\n").encode("utf-8")


def _wheel_items(text: str) -> bytes:
    # recbole splits a title's last parenthesis off as the year ("(1995)", or "(V)" for item
    # 1412) and spells item 267's missing values "unkonwn"; put them back in GroupLens' form:
    # "Title (1995)", the year from the title, item 267 titled "unknown" with no year.
    rows = ["item_id\ttitle\tyear\tgenres"]
    for line in text.splitlines()[1:]:
        if not line:
            continue
        item_id, title, year, genres = line.split("\t")
        title = "unknown" if title == "unkonwn" else f"{title} ({year})"
        rows.append(f"{item_id}\t{title}\t{_title_year(title)}\t{'|'.join(genres.split())}")
    return ("\n".join(rows) + "\n").encode("utf-8")


def _write_dataset(target: Path, files: RawFiles, spec: DatasetSpec, source: str) -> None:
    backup = _aside_if_damaged(target, spec)
    try:
        with atomic_path(target, directory=True, backup=backup) as tmp:
            for file, data in zip(DATA_FILES, (files.ratings, files.users, files.items),
                                  strict=True):  # fmt: skip
                (tmp / file).write_bytes(data)
            write_manifest(tmp, spec, source)
    except OSError as error:
        raise _not_writable(target, error) from None
    if backup is not None:
        log.warning("the previous copy, which did not verify, is kept as %s", backup)


def _aside_if_damaged(target: Path, spec: DatasetSpec) -> Path | None:
    """Where to keep an existing copy that does not verify completely (None: there is none, or
    it is a verified copy, which a download reproduces)."""
    if not target.exists():
        return None
    try:
        if set(verify_dataset(target, spec)) == set(DATA_FILES):
            return None
    except DataError:
        pass
    aside = target.with_name(f"{target.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    return aside.with_name(f"{aside.name}-{os.getpid()}") if aside.exists() else aside


def _not_writable(target: Path, error: OSError) -> DataError:
    folder = target.parent
    if not isinstance(error, PermissionError) and error.errno != errno.EROFS:
        return DataError(f"could not write {target} ({_one_line(error)}); free some space or "
                         f"set data.dir=<another folder> (--data-dir) and run again")  # fmt: skip
    manual = folder / f"{target.name}.zip"
    move = f", and move {manual} there" if manual.exists() else ""
    return DataError(f"the data folder {folder} is not writable ({error.strerror}); make it "
                     f"writable, or set data.dir=<a writable folder> "
                     f"(--data-dir){move}")  # fmt: skip
