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
    dataset_spec,
    ensure_dataset,
    verify_ratings,
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
        SHA-256 of the ratings file, verified against the published value.
    """

    name: str
    ratings: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    ratings_sha256: str


def load_movielens(data_dir: str | Path, name: str = "ml-100k", *, download: bool = True):
    """Verify (obtaining first when ``download``) and load a MovieLens release."""
    spec = dataset_spec(name)
    folder = ensure_dataset(data_dir, name) if download else Path(data_dir) / name
    ratings_path = folder / RATINGS_FILE
    if not ratings_path.exists():
        raise DataError(f"{ratings_path} not found: run `python -m recsys.data download`")
    sha = verify_ratings(ratings_path, spec)
    return MovieLens(
        name=name,
        ratings=read_ratings(ratings_path),
        users=read_users(folder / USERS_FILE),
        items=read_items(folder / ITEMS_FILE),
        ratings_sha256=sha,
    )


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
