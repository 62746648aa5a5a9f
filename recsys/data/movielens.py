"""Load a verified MovieLens copy into tables, keeping the original MovieLens ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.download import (
    ITEMS_FILE,
    RATINGS_FILE,
    USERS_FILE,
    dataset_dir,
    dataset_spec,
    download_command,
    ensure_dataset,
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
        ``user_id, age, gender, occupation, zip_code``, sorted by ``user_id``.
    items
        ``item_id, title, year, genres`` (``year`` nullable Int64, ``genres`` a list of
        strings), sorted by ``item_id``.
    ratings_sha256
        SHA-256 of the ratings file, verified against the published value (users and items
        are verified too, against pinned values or the copy's manifest).
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
        if not (folder / RATINGS_FILE).exists():
            raise DataError(f"{folder / RATINGS_FILE} not found: run "
                            f"{download_command(data_dir, name)}")  # fmt: skip
        verify_dataset(folder, spec)
    ratings_path = folder / RATINGS_FILE
    return MovieLens(
        name=name,
        ratings=_parsed(read_ratings, ratings_path),
        users=_parsed(read_users, folder / USERS_FILE),
        items=_parsed(read_items, folder / ITEMS_FILE),
        ratings_sha256=spec.ratings_sha256,  # verified above
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


def read_ratings(path: Path) -> pd.DataFrame:
    ratings = pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=["user_id", "item_id", "rating", "timestamp"],
        dtype={"user_id": np.int64, "item_id": np.int64, "rating": np.float32,
               "timestamp": np.int64},
    )  # fmt: skip
    return ratings


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
