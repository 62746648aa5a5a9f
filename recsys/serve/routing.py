"""One ``recommend`` over a bundle that never refuses a user: each request goes down a chain of
routes, and the answer says which route served it.

    from recsys.serve.routing import Demographics, RoutedRecommender
    router = RoutedRecommender.load("data/bundles/ml-100k")
    router.recommend(user_id=196)                                  # route "known-user"
    router.recommend(liked=["Fargo (1996)", 50])                   # route "fold-in"
    router.recommend(demographics=Demographics(age=30, gender="F", occupation="writer"))
    router.recommend()                                             # route "popular"

The chain, first match wins:

1. ``known-user``: a MovieLens user id of the bundle: the model's own user vector, searched in
   the FAISS index; films the user rated are never shown. An id the bundle lacks is a
   ``NotFoundError`` (the caller named someone; guessing for them would hide the mistake).
2. ``fold-in``: a new user with liked films: Mult-VAE's encoder when the bundle carries it
   (``recsys.models.multvae.VAEFoldIn``), ALS's own user step for an ALS bundle, else the
   ridge regression of the liked films on the item vectors (``Demo.fold_in``). Each film
   shows the liked film it is most similar to (co-rating PMI, ``co_rating_pmi_rows``), its
   reason.
3. ``demographics``: a new user known by age (and gender, occupation, zip code): the two-tower
   user tower when the bundle carries it (``recsys.models.two_tower.DemographicsTower``).
4. ``popular``: anyone else: the films the most users rated. A request whose demographics this
   bundle cannot use lands here too, and the answer's ``note`` says why.

Liked films come before demographics: they are the user's own word on their taste, and every
bundle can use them (demographics need a two-tower bundle). Measurement does not back that
order: on the ``cold_users`` protocol (``reports/cold_start.md``, ``python -m
recsys.cold_start``), given 1 rating, every plain fold-in's mean is below the two-tower's
demographics list and even below the popular list; given 5, demographics and fold-in differ
within the seeds' spread. The table's ``fold-in + popular`` rows add the popular list as a
prior, weighted as users held out of training choose: given 1 or 3 ratings the weights chosen
are mostly the largest offered, so those rows are all but the popular list; given 5 they reach
the demographics list's mean (ItemKNN +0.009, within the seeds' spread). This route does not add
that prior. Above every route there from 3 ratings on, beyond the seeds' spread, is a baseline
fitted on ratings in time order (``first_ratings``: what training users rated after their first
ratings, regressed on those), which no bundle carries. The fold-ins measured there are the
models' own (ALS's user step, EASE, ItemKNN, Mult-VAE's encoder), not the ridge regression this
route uses for other bundles. A route's films never include the liked ones. Like
``recsys.demo``, this imports neither MLflow nor Hydra; torch only for a bundle that carries a
tower or an encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.demo import (
    BundleRecommender,
    check_k,
    check_liked,
    co_rating_pmi_rows,
    normalise_title,
)
from recsys.errors import ConfigError, RecsysError

ROUTES = ("known-user", "fold-in", "demographics", "popular")
USER_TOWER, VAE_ENCODER = "two_tower.user_tower", "multvae.encoder"  # NewUserParts kinds


@dataclass(frozen=True)
class Demographics:
    """What a new user may say about themselves, as MovieLens records it: age in years,
    gender (``M``/``F``), occupation (one of the data's, e.g. ``writer``) and zip code (its
    first digit is a US region). Only the age is required; what is missing counts as unknown."""

    age: int
    gender: str | None = None
    occupation: str | None = None
    zip_code: str | None = None

    def frame(self) -> pd.DataFrame:
        """One row of ``age, gender, occupation, zip_code`` (``user_features``' input)."""
        return pd.DataFrame({"age": [self.age], "gender": [self.gender],
                             "occupation": [self.occupation],
                             "zip_code": [self.zip_code or ""]})  # fmt: skip


@dataclass(frozen=True)
class Recommendation:
    """An answer: the route that served it (``ROUTES``), how that route scored (``method``),
    why another route was passed over (``note``, or ``None``), and the films as catalogue rows
    of the bundle, best first, with their scores and, for fold-in, the row of the liked film
    each is most similar to (``because``; -1 where no one rated both; ``None`` for the other
    routes). ``table`` gives them as a table of ``recsys.demo.COLUMNS`` plus ``because_id``
    and ``because_title``; a server reads the arrays (building a table costs more than the
    search)."""

    route: str
    method: str
    note: str | None
    rows: np.ndarray
    scores: np.ndarray
    because: np.ndarray | None
    demo: BundleRecommender = field(repr=False)

    @property
    def table(self) -> pd.DataFrame:
        table = self.demo.movie_table(self.rows, self.scores)
        reason = np.full(len(self.rows), -1) if self.because is None else self.because
        found = reason >= 0
        ids = pd.array(self.demo.items["item_id"].to_numpy()[reason], dtype="Int64")
        titles = pd.array(self.demo.items["title"].to_numpy()[reason], dtype="string")
        ids[~found], titles[~found] = pd.NA, pd.NA
        return table.assign(because_id=ids, because_title=titles)


class RoutedRecommender:
    """The chain of routes over one loaded bundle; see the module docstring."""

    def __init__(self, demo: BundleRecommender):
        self.demo = demo
        self.model = str(demo.manifest.get("model") or "the model")
        parts = demo.new_users
        kind = None if parts is None else parts.kind
        if kind not in (None, USER_TOWER, VAE_ENCODER):
            raise RecsysError(f"the bundle carries new-user parts of kind {kind!r}, which this "
                              f"recsys cannot use: update recsys, or export the run again")
        self.tower = self.encoder = None
        if kind == USER_TOWER:
            from recsys.models.two_tower import DemographicsTower

            self.tower = DemographicsTower(parts)
        elif kind == VAE_ENCODER:
            from recsys.models.multvae import VAEFoldIn

            self.encoder = VAEFoldIn(parts)
        self.rated_by = np.diff(demo.ratings.tocsc().indptr)  # (n_items,) raters per film
        self.popular_order = np.argsort(-self.rated_by, kind="stable")  # ties: lower row first

    @classmethod
    def load(cls, path: str | Path) -> RoutedRecommender:
        """Load a bundle (checked against its manifest) and the parts it carries."""
        return cls(BundleRecommender.load(path))

    @property
    def routes(self) -> list[str]:
        """The routes this bundle can serve (``demographics`` only with a user tower)."""
        return [r for r in ROUTES if r != "demographics" or self.tower is not None]

    def recommend(self, user_id: int | None = None, liked: list[int | str] | tuple = (),
                  demographics: Demographics | None = None, k: int = 10) -> Recommendation:
        """Top-``k`` films by the first route of the chain that fits what is given."""
        check_liked(liked)
        if user_id is not None:
            if len(liked) or demographics is not None:
                raise ConfigError("give a known user's id, or a new user's liked films and/or "
                                  "demographics, not both")  # fmt: skip
            method = f"{self.model}'s vector of the user, searched in the FAISS index"
            return self._answer("known-user", method, *self.demo.recommend_rows(user_id, k))
        if len(liked):
            return self._fold_in(self.demo.liked_rows(list(liked)), k)
        if demographics is not None and self.tower is not None:
            check_demographics(demographics, self.tower.vocabularies)
            vector = self.tower.embed(demographics.frame())[0]  # (d,)
            method = "the two-tower user tower on age, gender, occupation and zip code"
            return self._answer("demographics", method, *self.demo.search_rows(vector, k))
        note = None
        if demographics is not None:
            note = (f"demographics need a two-tower bundle (this one is {self.model}'s): "
                    f"export a two_tower run with `python -m recsys.export --run-id RUN`")
        return self.popular(k, note)

    def popular(self, k: int = 10, note: str | None = None) -> Recommendation:
        """The ``k`` films the most users rated (the route of last resort)."""
        check_k(k)
        rows = self.popular_order[:k]
        method = "the films the most users rated (score: how many users rated the film)"
        return self._answer("popular", method, rows, self.rated_by[rows].astype(np.float32),
                            note=note)  # fmt: skip

    def _fold_in(self, liked: np.ndarray, k: int) -> Recommendation:
        if self.encoder is not None:
            rows = sp.csr_matrix((np.ones(len(liked), dtype=np.float32),
                                  (np.zeros(len(liked), dtype=np.int64), liked)),
                                 shape=(1, len(self.demo.item_vectors)))  # fmt: skip
            vector, method = self.encoder.vectors(rows)[0], "Mult-VAE's encoder of the liked films"
        else:
            vector = self.demo.fold_in(liked)
            method = self.demo.fold_in_method
        rows, scores = self.demo.search_rows(vector, k, liked)
        return self._answer("fold-in", method, rows, scores, self.reasons(liked, rows))

    def _answer(self, route: str, method: str, rows: np.ndarray, scores: np.ndarray,
                because: np.ndarray | None = None, note: str | None = None) -> Recommendation:
        return Recommendation(route, method, note, rows, scores, because, self.demo)

    def reasons(self, liked: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """For each film in ``rows``, the row of the liked film most similar to it by
        co-rating PMI (ties: the first liked), -1 where no one rated it together with any
        liked film."""
        similarity = co_rating_pmi_rows(self.demo.ratings, liked)[:, rows]  # (L, k)
        found = np.isfinite(similarity).any(axis=0)  # (k,)
        return np.where(found, liked[np.argmax(similarity, axis=0)], -1)

    def search(self, text: str, limit: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the films whose title contains ``text`` (case and spacing aside), the most
        rated first, at most ``limit``, and how many users rated each. An empty ``text`` gives
        the most rated films."""
        key = normalise_title(text)
        hits = np.flatnonzero(np.char.find(self.demo.normalised_titles, key) >= 0)
        hits = hits[np.argsort(-self.rated_by[hits], kind="stable")][:limit]
        return hits, self.rated_by[hits]


def check_demographics(demographics: Demographics, vocabularies: dict[str, list]) -> None:
    """``ConfigError`` naming the field, the value and what is allowed, for an age outside 1
    to 120, or a gender or occupation the training data did not have."""
    age = demographics.age
    if isinstance(age, bool) or not isinstance(age, int) or not 1 <= age <= 120:
        raise ConfigError(f"age must be a whole number of years from 1 to 120, got {age!r}")
    for name in ("gender", "occupation"):
        value, allowed = getattr(demographics, name), vocabularies.get(name, [])
        if value is not None and value not in allowed:
            raise ConfigError(f"{name} {value!r} is not one the model knows: use one of "
                              f"{', '.join(map(str, allowed))}, or leave it out")
    zip_code = demographics.zip_code
    if zip_code is not None and not (isinstance(zip_code, str) and len(zip_code) <= 10):
        raise ConfigError(f"zip_code must be text of at most 10 characters, got {zip_code!r}")

