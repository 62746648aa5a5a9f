"""Small zips in the real format of each GroupLens release: the same member paths, separators,
encodings, headers, quoting and awkward rows (a Latin-1 title, titles with colons, commas and
quotes, half stars, a film without genres, a film nobody rated), at a few hundred ratings."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tests.conftest import make_ratings

N_USERS, N_ITEMS = 60, 80
RELEASES = ["ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m"]
ROOTS = {"ml-10m": "ml-10M100K"}  # the others' folder is their name
AGES = (1, 18, 25, 35, 45, 50, 56)  # ML-1M's age groups
UNRATED = N_ITEMS + 1  # listed among the films, rated by nobody


@dataclass(frozen=True)
class Release:
    """A test zip and what loading it must give."""

    name: str
    archive: bytes
    ratings: pd.DataFrame  # user_id, item_id, rating, timestamp as the zip has them
    titles: dict[int, str]  # item id -> title, as decoded
    genres: dict[int, list[str]]  # item id -> genres

    @property
    def md5(self) -> str:
        return hashlib.md5(self.archive, usedforsecurity=False).hexdigest()

    def member(self, file: str) -> bytes:
        root = ROOTS.get(self.name, self.name)
        return zipfile.ZipFile(io.BytesIO(self.archive)).read(f"{root}/{file}")


def films() -> tuple[dict[int, str], dict[int, list[str]]]:
    """Titles and genres of items 1..N_ITEMS and UNRATED, with GroupLens' awkward cases."""
    titles = {i: f"Movie {i} ({1950 + i % 50})" for i in range(1, N_ITEMS + 1)}
    titles[1] = "Misérables, Les (1995)"  # Latin-1 in ML-1M
    titles[2] = "Star Wars: Episode IV - A New Hope (1977)"  # a colon in a "::" file
    titles[3] = '"Great Performances" Cats (1998)'  # quotes (quoted again in the CSV)
    titles[4] = "Babylon 5"  # no year
    titles[UNRATED] = "Nobody's Film (2001)"
    genres = {i: ["Comedy", "Drama"] if i % 2 else ["Sci-Fi"] for i in titles}
    genres[5] = []  # "(no genres listed)" from ML-10M on
    return titles, genres


def release_ratings(name: str, seed: int = 0) -> pd.DataFrame:
    """Ratings of users 1..N_USERS: whole stars for ML-1M, half stars for the later ones."""
    ratings = make_ratings(n_users=N_USERS, n_items=N_ITEMS, per_user=12, seed=seed)
    if name != "ml-1m":
        half = np.random.default_rng(seed).integers(1, 11, len(ratings)) / 2  # 0.5 .. 5.0
        ratings["rating"] = half
    return ratings


def release_zip(name: str, seed: int = 0, movies_encoding: str = "latin-1") -> Release:
    """A zip laid out as GroupLens ships ``name`` (``movies_encoding``: ML-10M's movies.dat)."""
    ratings = release_ratings(name, seed)
    titles, genres = films()
    if name in ("ml-1m", "ml-10m"):
        encoding = "latin-1" if name == "ml-1m" else movies_encoding
        members = _dat_members(name, ratings, titles, genres, encoding)
    else:
        members = _csv_members(ratings, titles, genres)
    if name == "ml-32m":
        members["checksums.txt"] = "".join(
            f"{hashlib.md5(data, usedforsecurity=False).hexdigest()}  {file}\n"
            for file, data in members.items()).encode()  # fmt: skip
    root = ROOTS.get(name, name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{root}/", b"")  # GroupLens' zips list the folder first
        for file, data in members.items():
            archive.writestr(f"{root}/{file}", data)
    return Release(name, buffer.getvalue(), ratings, titles, genres)


def _stars(rating: float) -> str:
    return f"{rating:g}"  # 5, 3.5: as ratings.dat writes them


def _dat_members(name, ratings, titles, genres, encoding) -> dict[str, bytes]:
    lines = (f"{u}::{i}::{_stars(r)}::{t}\n" for u, i, r, t in ratings.itertuples(index=False))
    no_genres = "(no genres listed)"
    movies = "".join(f"{i}::{title}::{'|'.join(genres[i]) or no_genres}\n"
                     for i, title in titles.items())  # fmt: skip
    members = {"ratings.dat": "".join(lines).encode(), "movies.dat": movies.encode(encoding)}
    if name == "ml-1m":
        members["users.dat"] = "".join(
            f"{u}::{'MF'[u % 2]}::{AGES[u % len(AGES)]}::{u % 21}::{55000 + u:05d}\n"
            for u in range(1, N_USERS + 1)).encode()  # fmt: skip
        members["README"] = b"SUMMARY\n"
    else:
        members["tags.dat"] = b"15::4973::excellent!::1215184630\n"
        members["README.html"] = b"<html></html>\n"
    return members


def _csv_members(ratings, titles, genres) -> dict[str, bytes]:
    frame = ratings.rename(columns={"user_id": "userId", "item_id": "movieId"})
    frame["rating"] = frame["rating"].map("{:.1f}".format)  # 4.0, 3.5: as ratings.csv has them
    movies = pd.DataFrame({"movieId": list(titles), "title": list(titles.values()),
                           "genres": ["|".join(g) or "(no genres listed)"
                                      for g in genres.values()]})  # fmt: skip
    return {
        "ratings.csv": frame.to_csv(index=False, lineterminator="\n").encode(),
        "movies.csv": movies.to_csv(index=False, lineterminator="\n").encode("utf-8"),
        "links.csv": b"movieId,imdbId,tmdbId\n1,0114709,862\n",
        "tags.csv": b"userId,movieId,tag,timestamp\n2,60756,funny,1445714994\n",
        "README.txt": b"Summary\n",
    }
