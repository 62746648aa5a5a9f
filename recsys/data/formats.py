"""What each GroupLens release holds and how its users and items become our normalised files.

Four layouts cover the six releases recsys knows:

- ML-100K: ``u.data`` (tab-separated ratings), ``u.user`` and ``u.item`` (``|``-separated,
  Latin-1; genres as 19 flags);
- ML-1M: ``ratings.dat``, ``users.dat``, ``movies.dat`` (``::``-separated; ``movies.dat`` is
  Latin-1; ages and occupations are codes);
- ML-10M: ``ratings.dat`` (half stars) and ``movies.dat``, no users (its zip's folder is
  ``ml-10M100K/``);
- ML-20M, ML-25M, ML-32M: ``ratings.csv`` and ``movies.csv`` (comma-separated with a header,
  UTF-8, titles quoted where they hold commas); ML-32M adds ``checksums.txt`` (an MD5 per file).

Whatever the layout, ``users.tsv`` is ``user_id, age, gender, occupation, zip_code`` and
``items.tsv`` is ``item_id, title, year, genres`` (tab-separated UTF-8 with a header line; the
year is the film's, from its title; genres joined by ``|``, empty where GroupLens lists none).
The normalisers run once per download, on files of at most 87,585 lines.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

USERS_HEADER = "user_id\tage\tgender\toccupation\tzip_code"
ITEMS_HEADER = "item_id\ttitle\tyear\tgenres"
TITLE_YEAR = re.compile(r"\((\d{4})\)")
NO_GENRES = "(no genres listed)"  # ML-10M and later, for a film without genres

GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

# ML-1M's README: users.dat's occupation codes 0..20
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """The members of a release's zip (under its root folder) and what recsys keeps of them.

    The ratings member is kept byte for byte as ``ratings_file`` (its suffix says how to parse
    it); the items member (and the users member, where there is one) is decoded with the first
    of ``encodings`` that fits and normalised to ``items.tsv`` (``users.tsv``).
    ``checksums_member`` lists an MD5 per member (ML-32M's ``checksums.txt``).
    """

    ratings_member: str
    ratings_file: str
    items_member: str
    normalise_items: Callable[[str], bytes]
    encodings: tuple[str, ...]
    users_member: str | None = None
    normalise_users: Callable[[str], bytes] | None = None
    checksums_member: str | None = None


def grouplens_users(text: str) -> bytes:
    """ML-100K's ``u.user`` (``id|age|gender|occupation|zip``) as ``users.tsv``."""
    rows = [USERS_HEADER] + ["\t".join(line.split("|")) for line in text.splitlines() if line]
    return ("\n".join(rows) + "\n").encode("utf-8")


def title_year(title: str) -> str:
    """The film's year: the last ``(YYYY)`` of a GroupLens title, or ``""``."""
    years = TITLE_YEAR.findall(title)
    return years[-1] if years else ""


def grouplens_items(text: str) -> bytes:
    """ML-100K's ``u.item`` (``id|title|date|video date|url|19 genre flags``) as ``items.tsv``."""
    # The year is the film's, from the title, as recbole has it: the release date is often a
    # later video release (Taxi Driver (1976): 16-Feb-1996). Three titles end in a space.
    rows = [ITEMS_HEADER]
    for line in text.splitlines():
        if not line:
            continue
        fields = line.split("|")
        item_id, title, flags = fields[0], fields[1].strip(), fields[5:]
        genres = "|".join(g for g, flag in zip(GENRES, flags, strict=True) if flag == "1")
        rows.append(f"{item_id}\t{title}\t{title_year(title)}\t{genres}")
    return ("\n".join(rows) + "\n").encode("utf-8")


def wheel_users(text: str) -> bytes:
    """recbole's ``ml-100k.user`` (typed header, tab-separated) as ``users.tsv``."""
    lines = text.splitlines()
    rows = [USERS_HEADER] + [x for x in lines[1:] if x]
    return ("\n".join(rows) + "\n").encode("utf-8")


def wheel_items(text: str) -> bytes:
    """recbole's ``ml-100k.item`` as ``items.tsv``, byte for byte as from GroupLens' zip."""
    # recbole splits a title's last parenthesis off as the year ("(1995)", or "(V)" for item
    # 1412) and spells item 267's missing values "unkonwn"; put them back in GroupLens' form:
    # "Title (1995)", the year from the title, item 267 titled "unknown" with no year.
    rows = [ITEMS_HEADER]
    for line in text.splitlines()[1:]:
        if not line:
            continue
        item_id, title, year, genres = line.split("\t")
        title = "unknown" if title == "unkonwn" else f"{title} ({year})"
        rows.append(f"{item_id}\t{title}\t{title_year(title)}\t{'|'.join(genres.split())}")
    return ("\n".join(rows) + "\n").encode("utf-8")


def _tsv(header: str, columns: list[pd.Series]) -> bytes:
    """Columns of strings joined by tabs, one row a line, under ``header``."""
    rows = columns[0].str.cat(columns[1:], sep="\t")
    return (header + "\n" + "".join(rows + "\n")).encode("utf-8")


def _items_tsv(item_id: pd.Series, title: pd.Series, genres: pd.Series) -> bytes:
    """``items.tsv`` from GroupLens' id, title and ``|``-joined genres (vectorised)."""
    not_a_number = ~item_id.str.fullmatch(r"\d+")
    if not_a_number.any():
        raise ValueError(f"movie id {item_id[not_a_number].iloc[0]!r} is not a number")
    title = title.str.replace(r"[\t\r\n]", " ", regex=True).str.strip()
    year = title.str.findall(TITLE_YEAR).str[-1].fillna("")
    genres = genres.where(genres != NO_GENRES, "")
    return _tsv(ITEMS_HEADER, [item_id, title, year, genres])


def _dat_fields(text: str, names: tuple[str, ...]) -> pd.DataFrame:
    """The ``::``-separated lines of ``text`` as string columns ``names``; a line with another
    number of fields is a ValueError. Titles hold single colons, never two."""
    lines = pd.Series(text.splitlines(), dtype=object)
    fields = lines[lines != ""].str.split("::", regex=False)
    counts = fields.str.len()
    if len(fields) == 0 or (counts != len(names)).any():
        bad = lines[lines != ""][counts != len(names)]
        shown = bad.iloc[0] if len(bad) else "(no lines)"
        raise ValueError(f"expected {'::'.join(names)} on every line, got {shown!r}")
    return pd.DataFrame(fields.tolist(), columns=list(names), dtype=object).astype(str)


def dat_items(text: str) -> bytes:
    """ML-1M / ML-10M ``movies.dat`` (``MovieID::Title::Genres``) as ``items.tsv``."""
    movies = _dat_fields(text, ("MovieID", "Title", "Genres"))
    return _items_tsv(movies["MovieID"], movies["Title"], movies["Genres"])


def dat_users(text: str) -> bytes:
    """ML-1M ``users.dat`` (``UserID::Gender::Age::Occupation::Zip-code``) as ``users.tsv``.

    The age stays GroupLens' group code (1: under 18, 18: 18-24, ..., 56: 56+), the lower
    bound of the group; the occupation code becomes its name from ML-1M's README.
    """
    users = _dat_fields(text, ("UserID", "Gender", "Age", "Occupation", "Zip-code"))
    codes = pd.to_numeric(users["Occupation"])  # ValueError if not a number
    occupation = codes.map(dict(enumerate(ML1M_OCCUPATIONS)))
    if occupation.isna().any():
        raise ValueError(f"occupation code {codes[occupation.isna()].iloc[0]} is not one of "
                         f"0..{len(ML1M_OCCUPATIONS) - 1}")  # fmt: skip
    columns = [users["UserID"], users["Age"], users["Gender"], occupation, users["Zip-code"]]
    return _tsv(USERS_HEADER, columns)


def csv_items(text: str) -> bytes:
    """ML-20M and later ``movies.csv`` (``movieId,title,genres``, quoted titles) as
    ``items.tsv``."""
    movies = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    if list(movies.columns) != ["movieId", "title", "genres"]:
        raise ValueError(f"header {','.join(movies.columns)!r}, expected 'movieId,title,genres'")
    return _items_tsv(movies["movieId"], movies["title"], movies["genres"])


ML_100K = Layout("u.data", "ratings.tsv", "u.item", grouplens_items, ("latin-1",),
                 "u.user", grouplens_users)  # fmt: skip
ML_1M = Layout("ratings.dat", "ratings.dat", "movies.dat", dat_items, ("latin-1",),
               "users.dat", dat_users)  # fmt: skip
# ML-10M's README does not name an encoding: UTF-8 where it decodes, else Latin-1 as ML-1M
ML_10M = Layout("ratings.dat", "ratings.dat", "movies.dat", dat_items, ("utf-8", "latin-1"))
ML_CSV = Layout("ratings.csv", "ratings.csv", "movies.csv", csv_items, ("utf-8",))
ML_32M = Layout("ratings.csv", "ratings.csv", "movies.csv", csv_items, ("utf-8",),
                checksums_member="checksums.txt")  # fmt: skip

