"""Side features of users and items as integer codes, for models that use them (two-tower).

Every feature is a small categorical vocabulary with code 0 reserved for "unknown", so a user or
item never seen in training, or with a missing value, still has a valid encoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

AGE_EDGES = (18, 25, 35, 45, 50, 56)  # MovieLens-1M's age groups
DEMOGRAPHICS = ("age", "gender", "occupation", "zip_code")  # ML-100K's and ML-1M's users
YEAR_EDGES = (1930, 1950, 1960, 1970, 1980, 1990, 1995)
_TOKEN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Features:
    """Categorical features of one entity type (users or items), row ``r`` = index ``r``.

    ``categorical`` maps a feature name to ``(n,)`` int64 codes with ``cardinality[name]``
    values (0 = unknown); ``multi_hot`` is an ``(n, m)`` float32 matrix (item genres) or
    ``None``; ``tokens`` is an ``(n, L)`` int64 matrix of token codes padded with 0 (titles)
    with ``n_tokens`` codes in all, or ``None``.
    """

    categorical: dict[str, np.ndarray]
    cardinality: dict[str, int]
    multi_hot: np.ndarray | None = None
    tokens: np.ndarray | None = None
    n_tokens: int = 1
    vocabularies: dict[str, list] | None = None  # the values behind codes 1.. (to encode more)

    def rows(self, index: np.ndarray) -> Features:
        """The features of the rows at ``index``."""
        return Features(
            {name: codes[index] for name, codes in self.categorical.items()},
            self.cardinality,
            None if self.multi_hot is None else self.multi_hot[index],
            None if self.tokens is None else self.tokens[index],
            self.n_tokens,
            self.vocabularies,
        )


def user_features(users: pd.DataFrame, like: Features | None = None) -> Features:
    """Age bucket, gender, occupation and the first zip-code digit (a US region).

    ``like``: encode with the vocabularies of an earlier encoding (for new users, whose
    unseen values get code 0), so codes mean the same thing as in training.
    """
    known = like.vocabularies if like is not None else {}
    age = np.digitize(users["age"].to_numpy(), AGE_EDGES) + 1  # 1..len(edges)+1
    first = users["zip_code"].astype(str).str[0]
    columns = {"gender": users["gender"], "occupation": users["occupation"],
               "zip": first.where(first.str.isdigit(), None)}  # fmt: skip
    categorical, cardinality, vocabularies = {"age": age}, {"age": len(AGE_EDGES) + 2}, {}
    for name, values in columns.items():
        categorical[name], vocabularies[name] = _codes(values, known.get(name))
        cardinality[name] = len(vocabularies[name]) + 1
    return Features(categorical, cardinality, vocabularies=vocabularies)


def item_features(items: pd.DataFrame, max_title_tokens: int = 8) -> Features:
    """Year bucket, genres (multi-hot) and title tokens (lower-cased words, year removed)."""
    year = items["year"].astype("Float64").fillna(np.nan).to_numpy(dtype=np.float64)
    year_bucket = np.where(np.isnan(year), 0, np.digitize(np.nan_to_num(year), YEAR_EDGES) + 1)
    genres = sorted({g for row in items["genres"] for g in row})
    genre_index = {g: i for i, g in enumerate(genres)}
    multi_hot = np.zeros((len(items), len(genres)), dtype=np.float32)
    rows = np.repeat(np.arange(len(items)), [len(g) for g in items["genres"]])
    cols = [genre_index[g] for row in items["genres"] for g in row]
    multi_hot[rows, cols] = 1.0
    tokens, n_tokens = _title_tokens(items["title"], max_title_tokens)
    return Features(
        categorical={"year": year_bucket.astype(np.int64)},
        cardinality={"year": len(YEAR_EDGES) + 2},
        multi_hot=multi_hot,
        tokens=tokens,
        n_tokens=n_tokens,
    )


def _codes(values: pd.Series, vocabulary: list | None = None) -> tuple[np.ndarray, list]:
    """Codes 1..n for the values of ``vocabulary`` (default: the sorted distinct values),
    0 for missing or unseen values; and the vocabulary."""
    if vocabulary is None:
        vocabulary = sorted(values.dropna().unique().tolist())
    known = values.where(values.isin(vocabulary))  # unseen -> missing (pandas 4 would raise)
    codes = pd.Categorical(known, categories=vocabulary).codes.astype(np.int64) + 1
    return codes, vocabulary


def _title_tokens(titles: pd.Series, max_tokens: int) -> tuple[np.ndarray, int]:
    words = [_TOKEN.findall(re.sub(r"\(\d{4}\)\s*$", "", t).lower())[:max_tokens]
             for t in titles]  # fmt: skip
    vocabulary = {w: i + 1 for i, w in enumerate(sorted({w for row in words for w in row}))}
    tokens = np.zeros((len(titles), max_tokens), dtype=np.int64)
    for row, title_words in enumerate(words):  # once per dataset load, not a hot path
        tokens[row, : len(title_words)] = [vocabulary[w] for w in title_words]
    return tokens, len(vocabulary) + 1
