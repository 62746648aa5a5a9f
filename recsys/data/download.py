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
normalised to one tab-separated format. The folder is built in a temporary directory and renamed
into place, so an interrupted download never leaves a folder that looks complete.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import logging
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from recsys.errors import DataError
from recsys.files import atomic_path, sha256_file

log = logging.getLogger(__name__)

RATINGS_FILE = "ratings.tsv"
USERS_FILE = "users.tsv"
ITEMS_FILE = "items.tsv"
SOURCE_FILE = "SOURCE.json"

GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


@dataclass(frozen=True)
class DatasetSpec:
    """Where a MovieLens release comes from and how to recognise an unmodified copy."""

    name: str
    ratings_sha256: str
    grouplens_url: str
    wheel_requirement: str
    wheel_sha256: str
    wheel_folder: str


DATASETS = {
    "ml-100k": DatasetSpec(
        name="ml-100k",
        ratings_sha256="06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        grouplens_url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        wheel_requirement="recbole==1.2.1",
        wheel_sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        wheel_folder="recbole/dataset_example/ml-100k",
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


def verify_ratings(path: Path, spec: DatasetSpec) -> str:
    """Check ``path`` against the published SHA-256; return it, or raise ``DataError``."""
    actual = sha256_file(path)
    if actual != spec.ratings_sha256:
        raise DataError(
            f"checksum mismatch for {path}: expected SHA-256 {spec.ratings_sha256}, got {actual}; "
            f"the file is corrupt or modified: delete {path.parent} and run "
            f"`python -m recsys.data download`"
        )
    return actual


def dataset_dir(data_dir: str | Path, name: str) -> Path:
    return Path(data_dir) / name


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
        is complete and verified.

    Raises
    ------
    DataError
        The cached copy is corrupt (names the file and both hashes), or no source could be
        reached (lists the sources tried and where to put the zip by hand).
    """
    spec = dataset_spec(name)
    target = dataset_dir(data_dir, name)
    if (target / RATINGS_FILE).exists() and not force:
        verify_ratings(target / RATINGS_FILE, spec)
        return target

    failures = []
    for source, fetch in _sources(spec, Path(data_dir)):
        try:
            files = fetch()
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
        f"`python -m recsys.data download`"
    )


def _sources(spec: DatasetSpec, data_dir: Path):
    manual_zip = data_dir / f"{spec.name}.zip"
    yield str(manual_zip), lambda: _read_grouplens_zip(_read_local(manual_zip), spec)
    yield spec.grouplens_url, lambda: _read_grouplens_zip(_http_get(spec.grouplens_url), spec)
    yield f"pip download {spec.wheel_requirement}", lambda: _read_wheel(spec)


def _read_local(path: Path) -> bytes:
    if not path.exists():
        raise DataError("not present")
    return path.read_bytes()


def _http_get(url: str, timeout: float = 30.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            data = response.read()
    except http.client.IncompleteRead as error:
        raise DataError(f"partial download ({len(error.partial)} bytes, then the connection "
                        f"closed)") from None
    except (OSError, http.client.HTTPException) as error:  # URLError, timeouts, resets
        raise DataError(f"unreachable ({error})") from None
    if expected is not None and len(data) != int(expected):
        raise DataError(f"partial download ({len(data)} of {expected} bytes)")
    return data


def _open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DataError("not a valid zip (corrupt or partial download)") from None


def _member(archive: zipfile.ZipFile, path: str) -> bytes:
    try:
        return archive.read(path)
    except KeyError:
        raise DataError(f"{path} missing from the archive") from None
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{path} unreadable in the archive ({error})") from None


def _check_ratings_bytes(ratings: bytes, spec: DatasetSpec, where: str) -> None:
    actual = sha256_bytes(ratings)
    if actual != spec.ratings_sha256:
        raise DataError(
            f"checksum mismatch for {where}: expected SHA-256 {spec.ratings_sha256}, got {actual}"
        )


def _read_grouplens_zip(data: bytes, spec: DatasetSpec) -> RawFiles:
    archive = _open_zip(data)
    root = spec.name
    ratings = _member(archive, f"{root}/u.data")
    _check_ratings_bytes(ratings, spec, f"{root}/u.data")
    users = _member(archive, f"{root}/u.user").decode("latin-1")
    items = _member(archive, f"{root}/u.item").decode("latin-1")
    return RawFiles(ratings, _grouplens_users(users), _grouplens_items(items))


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
    ratings = inter.split(b"\n", 1)[1]  # drop the typed header line
    _check_ratings_bytes(ratings, spec, f"{folder}.inter (header dropped)")
    users = _member(archive, f"{folder}.user").decode("utf-8")
    items = _member(archive, f"{folder}.item").decode("utf-8")
    return RawFiles(ratings, _wheel_users(users), _wheel_items(items))


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
    with atomic_path(target, directory=True) as tmp:
        (tmp / RATINGS_FILE).write_bytes(files.ratings)
        (tmp / USERS_FILE).write_bytes(files.users)
        (tmp / ITEMS_FILE).write_bytes(files.items)
        verify_ratings(tmp / RATINGS_FILE, spec)
        record = {
            "dataset": spec.name,
            "source": source,
            "ratings_sha256": spec.ratings_sha256,
            "obtained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (tmp / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
