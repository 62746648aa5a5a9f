"""Load a verified MovieLens copy into tables, keeping the original MovieLens ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.download import (
    ITEMS_FILE,
    USERS_FILE,
    dataset_dir,
    dataset_spec,
    download_command,
    ensure_dataset,
    read_manifest,
    repair_advice,
    verify_dataset,
)
from recsys.errors import DataError


@dataclass(frozen=True)
class MovieLens:
    """A MovieLens release as three tables.

    Attributes
    ----------
    ratings
        ``user_id, item_id, rating, timestamp`` (int64, rating float32), original order.
    users
        ``user_id, age, gender, occupation, zip_code`` (ML-100K, ML-1M) or ``user_id`` alone
        (the later releases have no demographics: every user who rated), sorted by ``user_id``.
    items
        ``item_id, title, year, genres`` (``year`` nullable Int64, ``genres`` a list of
        strings), sorted by ``item_id``.
    ratings_sha256
        SHA-256 of the ratings file, verified against the pinned value (ML-100K) or the one
        recorded when the zip verified (users and items are verified too).
    """

    name: str
    ratings: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    ratings_sha256: str


def load_movielens(data_dir: str | Path, name: str = "ml-100k", *, download: bool = True):
    """Verify (obtaining first when ``download``) and load a MovieLens release.

    Raises
    ------
    DataError
        No copy (without ``download``), a file that does not verify, or one that cannot be
        parsed; the message names the file and the command that repairs the copy.
    """
    spec = dataset_spec(name)
    if download:
        folder = ensure_dataset(data_dir, name)  # verifies every file
    else:
        folder = dataset_dir(data_dir, name)
        if not (folder / spec.ratings_file).exists():
            raise DataError(f"{folder / spec.ratings_file} not found: run "
                            f"{download_command(data_dir, name)}")  # fmt: skip
        verify_dataset(folder, spec)
    ratings = _parsed(read_ratings, folder / spec.ratings_file)
    if USERS_FILE in spec.files:
        users = _parsed(read_users, folder / USERS_FILE)
    else:
        users = pd.DataFrame({"user_id": np.sort(pd.unique(ratings["user_id"]))})
    return MovieLens(
        name=name,
        ratings=ratings,
        users=users,
        items=_parsed(read_items, folder / ITEMS_FILE),
        # verified above, against the pinned value or the manifest
        ratings_sha256=spec.ratings_sha256 or read_manifest(folder)[spec.ratings_file],
    )


def _parsed(read, path: Path) -> pd.DataFrame:
    """``read(path)``; content it cannot parse is a DataError naming the file."""
    try:
        return read(path)
    except (ValueError, TypeError, KeyError) as error:  # ParserError, UnicodeDecodeError: Value
        damage = " ".join(f"{type(error).__name__}: {error}".split())
        raise DataError(
            f"{path} cannot be parsed ({damage}); {repair_advice(path.parent)}"
        ) from None


RATING_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
RATING_DTYPES = {"user_id": np.int64, "item_id": np.int64, "rating": np.float32,
                 "timestamp": np.int64}  # fmt: skip
CSV_HEADER = "userId,movieId,rating,timestamp"


def read_ratings(path: Path) -> pd.DataFrame:
    """The ratings file of a release, in the format its suffix names (pandas' C parser).

    ``.tsv``: ML-100K's ``u.data`` (``user<TAB>item<TAB>rating<TAB>timestamp``); ``.dat``:
    ML-1M/10M (``user::item::rating::timestamp``, half stars in ML-10M); ``.csv``: ML-20M and
    later (``userId,movieId,rating,timestamp`` header line).

    Returns
    -------
    DataFrame
        ``user_id, item_id, rating, timestamp`` (int64, rating float32), in file order.
    """
    readers = {".tsv": _read_tsv, ".dat": _read_dat, ".csv": _read_csv}
    return readers[Path(path).suffix](path)


def _read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", header=None, names=RATING_COLUMNS, dtype=RATING_DTYPES)


def _read_dat(path: Path) -> pd.DataFrame:
    # sep="::" needs pandas' python engine (~30x slower); split at every ":" in the C engine
    # instead and keep the fields between the empty ones (reading those too halves the speed).
    # A short line leaves a field empty and fails to parse; a long one is caught by the count
    # of colons, 6 a line.
    names = ["user_id", "_", "item_id", "__", "rating", "___", "timestamp"]
    ratings = pd.read_csv(path, sep=":", header=None, names=names, usecols=[0, 2, 4, 6],
                          dtype=RATING_DTYPES, engine="c")[RATING_COLUMNS]  # fmt: skip
    if _count(path, b":") != 6 * len(ratings):
        raise ValueError("a line has more fields than user::item::rating::timestamp")
    return ratings


def _count(path: Path, byte: bytes) -> int:
    """How often ``byte`` occurs in the file (read in 16 MiB blocks)."""
    with open(path, "rb") as handle:
        return sum(block.count(byte) for block in iter(lambda: handle.read(1 << 24), b""))


def _read_csv(path: Path) -> pd.DataFrame:
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\r\n")
    if header != CSV_HEADER:
        raise ValueError(f"header {header!r}, expected {CSV_HEADER!r}")
    return pd.read_csv(path, header=0, names=RATING_COLUMNS, dtype=RATING_DTYPES, engine="c")


def read_users(path: Path) -> pd.DataFrame:
    users = pd.read_csv(
        path, sep="\t", dtype={"user_id": np.int64, "age": np.int64, "zip_code": str}
    )
    return users.sort_values("user_id", ignore_index=True)


def read_items(path: Path) -> pd.DataFrame:
    items = pd.read_csv(
        path,
        sep="\t",
        dtype={"item_id": np.int64, "title": str, "year": "Int64", "genres": str},
        keep_default_na=False,
        na_values={"year": [""]},
        quoting=3,  # titles may contain quotes: read them verbatim
    )
    items["genres"] = [g.split("|") if g else [] for g in items["genres"]]
    return items.sort_values("item_id", ignore_index=True)
