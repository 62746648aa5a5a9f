"""A demo recommender over an exported bundle, for presentations.

    from recsys.demo import BundleRecommender, neighbour_popularity_ranks
    demo = BundleRecommender.load("data/bundles/ml-100k")
    demo.recommend(196)                                   # a MovieLens user
    demo.user_ratings(196)                                # what they rated, best first
    demo.similar_items("Star Wars (1977)")                # by title or id
    demo.recommend_for_new_user(liked=["Fargo (1996)", "Toy Story (1995)", 50])
    neighbour_popularity_ranks(demo, "Fargo")             # how popular its 10 neighbours are

    python -m recsys.demo --user 196
    python -m recsys.demo --like "Star Wars (1977)" --like "Fargo (1996)"
    python -m recsys.demo --similar "Fargo (1996)" [--similarity pmi|cosine]

Results are tables (rank, movie id, title, year, genres, score); the command line prints them
under a header saying whose and which run's they are and what the score means, in under 80
columns. A film the user rated (in any part of the run's split, or below its
``data.min_rating``) and a new user's liked films are never recommended.

Similar films are by default those rated by the same users more often than chance would have
it (``co_rating_pmi`` over every rating in the bundle): the cosine between the model's item
vectors (``similarity="cosine"``) puts the most-rated films next to almost everything.
``neighbour_popularity_ranks`` measures that.
``k`` must be a positive whole number; a ``k`` beyond the movies left to show gives all of them
(fewer than ``k`` rows, and the CLI says so). Unknown users or movies and a bad ``k`` raise
``RecsysError`` with suggestions; the CLI prints one line.
Loading a bundle imports neither MLflow nor Hydra (``recsys.bundle``).
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.bundle import Bundle, read_bundle
from recsys.cli import ArgumentParser, positive_int
from recsys.errors import ConfigError, NotFoundError, RecsysError
from recsys.models.als import als_user_step

COLUMNS = ["rank", "movie_id", "title", "year", "genres", "score"]
SIMILARITIES = ("pmi", "cosine")
PMI_SHRINKAGE = 40.0  # co-raters at which a pair keeps half its PMI (experiments/README.md)
ALS_TARGET = "recsys.models.als.ALSRecommender"
RIDGE_REGULARIZATION = 0.1  # the fold-in of embedding models other than ALS
WIDTH = 79  # the command line's output fits an 80-column terminal


class BundleRecommender:
    """Recommendations from a bundle's FAISS index; see the module docstring."""

    def __init__(self, bundle: Bundle):
        self.index = bundle.index
        self.user_vectors = np.ascontiguousarray(bundle.user_embeddings, dtype=np.float32)
        self.item_vectors = np.ascontiguousarray(bundle.item_embeddings, dtype=np.float32)
        self.user_ids = bundle.user_ids
        self.items = bundle.items.reset_index(drop=True)
        self.seen = bundle.seen
        self.ratings = bundle.ratings
        self.manifest = bundle.manifest
        self.new_users = bundle.new_users  # what scores a user never seen, if the run had it
        self.popularity_rank = popularity_ranks(np.diff(self.ratings.tocsc().indptr))
        self._user_index = {int(u): i for i, u in enumerate(self.user_ids)}
        self._user_order = np.argsort(self.user_ids)  # for vectorised id -> row lookups
        self._item_index = {int(m): i for i, m in enumerate(self.items["item_id"])}
        self._titles = self.items["title"].tolist()
        self.normalised_titles = np.array([normalise_title(t) for t in self._titles])  # once a load
        self._title_index = {t: i for i, t in enumerate(self.normalised_titles)}
        self._named = {}  # a title as said ("the shining"): its rows ("Shining, The (1980)")
        for row, title in enumerate(self.normalised_titles):
            for said in {spoken_title(title), spoken_title(title, year=False)}:
                self._named.setdefault(said, []).append(row)
        unit = self.item_vectors / np.maximum(
            np.linalg.norm(self.item_vectors, axis=1, keepdims=True), 1e-12)
        self._similarity_index = faiss.IndexFlatIP(unit.shape[1])  # cosine between items
        self._similarity_index.add(unit)
        self._columns = {"item_id": self.items["item_id"].array,
                         "title": self.items["title"].array,
                         "year": self.items["year"].array,  # nullable Int64
                         "genres": self.items["genres"].map("|".join).array}  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> BundleRecommender:
        """Load a bundle, checking every file against the manifest's SHA-256."""
        return cls(read_bundle(path))

    # -- queries -----------------------------------------------------------------------------
    def recommend(self, user_id: int, k: int = 10) -> pd.DataFrame:
        """Top-``k`` movies for a MovieLens user id, none of them one the user rated."""
        return self.movie_table(*self.recommend_rows(user_id, k))

    def recommend_rows(self, user_id: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """``recommend`` as the movies' rows and scores, best first (no table: for a server,
        where building the table would cost more than the search)."""
        check_k(k)
        user = self.user_index(user_id)
        rated = self.ratings.indices[self.ratings.indptr[user] : self.ratings.indptr[user + 1]]
        return self.search_rows(self.user_vectors[user], k, rated)

    def recommend_many(self, user_ids: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Batched: ``(B, k)`` movie ids and scores for many users, rated movies filtered."""
        check_k(k)
        users = self._user_rows(np.asarray(user_ids, dtype=np.int64))
        n_rated = np.diff(self.ratings.indptr)[users]
        depth = int(min(k + n_rated.max(), len(self._titles)))
        scores, found = self.index.search(self.user_vectors[users], depth)  # (B, depth)
        rows = np.repeat(np.arange(len(users)), depth)
        is_rated = np.asarray(self.ratings[users[rows], np.maximum(found.ravel(), 0)]).ravel() > 0
        keep = ~is_rated.reshape(found.shape) & (found >= 0)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept first, in rank order
        chosen = np.take_along_axis(found, order, axis=1)
        movie_ids = np.where(np.take_along_axis(keep, order, axis=1),
                             self._columns["item_id"][chosen], -1)  # fmt: skip
        return movie_ids, np.take_along_axis(scores, order, axis=1)

    def user_ratings(self, user_id: int) -> pd.DataFrame:
        """Every movie the user rated (movie_id, title, year, genres, rating), the best rated
        first; among equal ratings the most-rated movies (the best known) first."""
        user = self.user_index(user_id)
        span = slice(self.ratings.indptr[user], self.ratings.indptr[user + 1])
        items, stars = self.ratings.indices[span], self.ratings.data[span]
        order = np.lexsort((items, self.popularity_rank[items], -stars))
        table = self.movie_table(items[order], stars[order]).rename(columns={"score": "rating"})
        return table.drop(columns="rank")

    def similar_items(self, movie: int | str, k: int = 10, similarity: str = "pmi",
                      shrinkage: float = PMI_SHRINKAGE) -> pd.DataFrame:  # fmt: skip
        """The ``k`` movies most similar to ``movie`` (id or title).

        ``similarity="pmi"``: ``co_rating_pmi`` over every rating in the bundle, with
        ``shrinkage``; a movie that nobody rated together with ``movie`` is never shown, so
        there may be fewer than ``k``. ``"cosine"``: the cosine between the model's item vectors.
        """
        return self.movie_table(*self.similar_rows(self.movie_row(movie), k, similarity,
                                                   shrinkage))  # fmt: skip

    def recommend_for_new_user(self, liked: list[int | str], k: int = 10,
                               regularization: float | None = None) -> pd.DataFrame:  # fmt: skip
        """Fold a new user in from a few liked movies (``fold_in``), then recommend; the liked
        movies are not recommended back."""
        check_k(k)
        items = self.liked_rows(liked)
        return self.recommend_for_vector(self.fold_in(items, regularization), k, items)

    def liked_rows(self, liked: list[int | str]) -> np.ndarray:
        """The distinct rows of liked movies given by id or title (``NotFoundError`` for one
        the bundle does not have, ``RecsysError`` for none at all)."""
        check_liked(liked)
        if not len(liked):
            raise RecsysError("name at least one liked movie (title or id)")
        return np.unique([self.movie_row(m) for m in liked])

    def fold_in(self, items: np.ndarray, regularization: float | None = None) -> np.ndarray:
        """``(d,)`` float32 vector of a new user who liked the movies in rows ``items``.

        An ALS bundle: ALS's own user step against its item vectors, with the run's ``alpha``
        and ``regularization`` (``recsys.models.als.als_user_step``: what the model would have
        learnt for this user, and what ``python -m recsys.cold_start`` measures). Any other
        embedding model: the ridge regression ``min_u ||1 - V_L u||^2 + reg ||u||^2`` against
        the liked movies' vectors ``V_L`` (``reg`` 0.1 unless given).
        """
        settings = self.als_settings
        if settings is not None:
            rows = sp.csr_matrix((np.ones(len(items), dtype=np.float32),
                                  (np.zeros(len(items), dtype=np.int64), items)),
                                 shape=(1, len(self.item_vectors)))  # fmt: skip
            lam = settings["regularization"] if regularization is None else regularization
            return als_user_step(self.item_vectors, rows, settings["alpha"], lam)[0]
        lam = RIDGE_REGULARIZATION if regularization is None else regularization
        liked_vectors = self.item_vectors[items].astype(np.float64)  # (L, d)
        gram = liked_vectors.T @ liked_vectors + lam * np.eye(liked_vectors.shape[1])
        return np.linalg.solve(gram, liked_vectors.T @ np.ones(len(items))).astype(np.float32)

    @property
    def als_settings(self) -> dict | None:
        """``alpha`` and ``regularization`` of an ALS bundle's run (``None`` for other models)."""
        config = self.manifest.get("model_config") or {}
        if config.get("_target_") != ALS_TARGET:
            return None
        return {"alpha": float(config["alpha"]), "regularization": float(config["regularization"])}

    @property
    def fold_in_method(self) -> str:
        """How ``fold_in`` scores a new user, in words."""
        model = self.manifest.get("model") or "the model"
        if self.als_settings is not None:
            return f"ALS's user step on the liked films, against {model}'s film vectors"
        return f"ridge regression of the liked films on {model}'s film vectors"

    def recommend_for_vector(self, vector: np.ndarray, k: int = 10,
                             exclude: np.ndarray | None = None) -> pd.DataFrame:  # fmt: skip
        """Top-``k`` movies by inner product with a ``(d,)`` user vector (FAISS), none of the
        rows in ``exclude``."""
        return self.movie_table(*self.search_rows(vector, k, exclude))

    def title(self, movie: int | str) -> str:
        """The title of a movie given by id or (part of its) title."""
        return self._titles[self.movie_row(movie)]

    # -- rows and tables -------------------------------------------------------------------------
    def similar_rows(self, item: int, k: int, similarity: str = "pmi",
                     shrinkage: float = PMI_SHRINKAGE) -> tuple[np.ndarray, np.ndarray]:
        """Rows and scores of the ``k`` movies most similar to the movie in row ``item``."""
        check_k(k)
        if similarity not in SIMILARITIES:
            raise RecsysError(f"similarity must be one of {', '.join(SIMILARITIES)}, "
                              f"got {similarity!r}")  # fmt: skip
        if similarity == "cosine":
            unit = self._similarity_index.reconstruct(int(item))[None, :]
            depth = min(k + 1, len(self._titles))  # FAISS pads a search past the catalogue
            scores, found = self._similarity_index.search(unit, depth)
            keep = (found[0] != item) & (found[0] >= 0)
            return found[0][keep][:k], scores[0][keep][:k]
        scores = co_rating_pmi(self.ratings, item, shrinkage)
        scores[item] = -np.inf
        found = np.argsort(-scores, kind="stable")[:k]  # ties: the lower row first
        found = found[np.isfinite(scores[found])]
        return found, scores[found].astype(np.float32)

    def search_rows(self, vector: np.ndarray, k: int,
                    exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows and scores of the top-``k`` movies by inner product with a ``(d,)`` vector
        (the FAISS index), none of the rows in ``exclude``."""
        check_k(k)
        exclude = np.empty(0, dtype=np.int64) if exclude is None else exclude
        depth = min(k + len(exclude), len(self._titles))
        scores, found = self.index.search(np.asarray(vector, dtype=np.float32)[None, :], depth)
        keep = (found[0] >= 0) & ~np.isin(found[0], exclude)
        return found[0][keep][:k], scores[0][keep][:k]

    def movie_table(self, items: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        """The result table (``COLUMNS``) of the movies in rows ``items``, in that order."""
        columns = self._columns
        return pd.DataFrame({
            "rank": np.arange(1, len(items) + 1), "movie_id": columns["item_id"][items],
            "title": columns["title"][items], "year": columns["year"][items],
            "genres": columns["genres"][items], "score": scores,
        })  # fmt: skip

    def _user_rows(self, user_ids: np.ndarray) -> np.ndarray:
        order = self._user_order
        position = np.searchsorted(self.user_ids, user_ids, sorter=order)
        position = order[np.minimum(position, len(order) - 1)]
        unknown = self.user_ids[position] != user_ids
        if unknown.any():
            self.user_index(user_ids[unknown][0])  # raises with the explanation
        return position

    def user_index(self, user_id) -> int:
        """Row of a MovieLens user id in the bundle's user vectors (``RecsysError`` if unknown)."""
        whole = isinstance(user_id, int | np.integer) and not isinstance(user_id, bool)
        if isinstance(user_id, str) and re.fullmatch(r"\s*[0-9]+\s*", user_id):
            user_id, whole = int(user_id), True  # "196" from a command line
        try:
            if not whole:  # 196.7 is no user, nor is True (1)
                raise TypeError
            return self._user_index[int(user_id)]
        except (KeyError, ValueError, TypeError):
            ids = self.user_ids
            known = (f"MovieLens user ids here run from {ids.min()} to {ids.max()} "
                     f"({len(ids)} users)")  # fmt: skip
            raise NotFoundError(f"unknown user {user_id!r}: {known}; for someone new, use "
                                f"recommend_for_new_user(liked=[...])", [known]) from None

    def movie_row(self, movie) -> int:
        """Row of a movie given by id or by title: the whole title, the title without its year
        and with a trailing article put first ("Heat" for "Heat (1995)", "the shining" for
        "Shining, The (1980)"), or the start of one title alone; ``NotFoundError`` with the
        closest titles if there is none, or several."""
        if isinstance(movie, (int, np.integer)) or (isinstance(movie, str)
                                                    and re.fullmatch("[0-9]+", movie)):  # fmt: skip
            if int(movie) in self._item_index:
                return self._item_index[int(movie)]
            known = f"movie ids run from {min(self._item_index)} to {max(self._item_index)}"
            raise NotFoundError(f"unknown movie id {movie}: {known.removeprefix('movie ')}",
                                [known])  # fmt: skip
        key = normalise_title(str(movie))
        if key in self._title_index:
            return self._title_index[key]
        named = self._named.get(spoken_title(key), [])
        titles = {self.normalised_titles[i] for i in named}
        if len(titles) == 1:  # one title (MovieLens lists some films twice: as the title does)
            return self._title_index[titles.pop()]
        if named:  # "Hamlet": two films of that name
            titles = [self._titles[i] for i in named]
            raise NotFoundError(f"{len(named)} films are called {movie!r}: "
                                f"{'; '.join(titles)}: give the year too", titles)  # fmt: skip
        prefix = np.flatnonzero(np.char.startswith(self.normalised_titles, key))
        if len(prefix) == 1:  # "Fargo" for "Fargo (1996)"
            return int(prefix[0])
        close = [self._titles[i] for i in prefix[:5]] or difflib.get_close_matches(
            str(movie), self._titles, n=5, cutoff=0.5)
        hint = f"; did you mean: {'; '.join(close)}" if close else ""
        raise NotFoundError(f"unknown movie {movie!r}{hint}", close)


def co_rating_pmi(interactions: sp.csr_matrix, item: int,
                  shrinkage: float = PMI_SHRINKAGE) -> np.ndarray:  # fmt: skip
    r"""Shrunk pointwise mutual information between one item and every item, from who rated
    what.

    .. math::

        s(i, j) = \log \frac{c_{ij} \, N}{n_i \, n_j} \cdot \frac{c_{ij}}{c_{ij} + \lambda}

    with :math:`c_{ij}` the users who rated both, :math:`n_i` those who rated :math:`i`,
    :math:`N` those who rated anything and :math:`\lambda` the shrinkage. The logarithm
    compares how often two items are rated together with how often they would be if users
    chose them independently (0: no more than chance), so an item that nearly everyone rated is
    close to nothing in particular, where the cosine between item vectors or between co-rating
    counts puts it next to almost everything. Alone it favours a pair that one or two users
    happened to rate together; the factor :math:`c/(c+\lambda)` (Koren 2008's shrinkage of a
    similarity by its support) discounts such pairs: a pair rated together by
    :math:`\lambda` users keeps half its PMI.

    Parameters
    ----------
    interactions
        ``(n_users, n_items)`` CSR; every stored entry counts as "rated", whatever its value
        (a bundle's ``ratings``).
    item
        The item's column.
    shrinkage
        :math:`\lambda \ge 0`.

    Returns
    -------
    numpy.ndarray
        ``(n_items,)`` float64: :math:`s(i, j)` for every :math:`j` (for :math:`j = i`, the
        item's own PMI); ``-inf`` where no user rated both, as for every :math:`j` when
        nobody rated :math:`i`.
    """
    return co_rating_pmi_rows(interactions, np.array([item]), shrinkage)[0]


def co_rating_pmi_rows(interactions: sp.csr_matrix, items: np.ndarray,
                       shrinkage: float = PMI_SHRINKAGE) -> np.ndarray:  # fmt: skip
    """``co_rating_pmi`` of several items at once: ``(len(items), n_items)`` float64, row
    ``r`` the scores of ``items[r]`` against every item (one sparse product for all rows)."""
    if not shrinkage >= 0:
        raise RecsysError(f"shrinkage must be a number >= 0, got {shrinkage!r}")
    rated = sp.csr_matrix((np.ones(interactions.nnz), interactions.indices, interactions.indptr),
                          shape=interactions.shape)  # fmt: skip
    together = (rated[:, items].T @ rated).toarray()  # c_ij, (L, n_items)
    rated_by = np.bincount(rated.indices, minlength=rated.shape[1])  # n_j
    n_users = np.count_nonzero(np.diff(rated.indptr))  # N
    scores = np.full(together.shape, -np.inf)
    row, both = np.nonzero(together)  # n_i and n_j are > 0 there
    c = together[row, both]
    scores[row, both] = (np.log(c * n_users / (rated_by[both] * rated_by[items][row])) * c
                         / (c + shrinkage))  # fmt: skip
    return scores


def popularity_ranks(counts: np.ndarray) -> np.ndarray:
    """Rank of each item by its number of ratings: 1 for the most rated; items with equal
    counts share the best rank they tie for (counts 9, 7, 7, 3 -> ranks 1, 2, 2, 4).

    Parameters
    ----------
    counts
        ``(n_items,)`` ratings per item.

    Returns
    -------
    numpy.ndarray
        ``(n_items,)`` int64: 1 + how many items have strictly more ratings.
    """
    counts = np.asarray(counts)
    return 1 + len(counts) - np.searchsorted(np.sort(counts), counts, side="right")


def neighbour_popularity_ranks(recommender: BundleRecommender, movie: int | str, k: int = 10,
                               similarity: str = "pmi",
                               shrinkage: float = PMI_SHRINKAGE) -> np.ndarray:  # fmt: skip
    """Popularity ranks of the ``k`` movies most similar to ``movie``, in neighbour order.

    How much a similarity is "just popularity": with ranks from ``popularity_ranks`` over
    every rating in the bundle, ``(ranks <= 20).sum()`` is how many of the neighbours are among
    the 20 most-rated films (``experiments/similar_popularity.py`` prints it for famous films).

    Parameters
    ----------
    recommender
        A loaded bundle.
    movie
        A movie id or title, as for ``BundleRecommender.similar_items``.
    k, similarity, shrinkage
        As for ``BundleRecommender.similar_items``.

    Returns
    -------
    numpy.ndarray
        ``(k,)`` int64 (fewer when fewer movies are similar at all): 1 for the most-rated film.
    """
    items, _ = recommender.similar_rows(recommender.movie_row(movie), k, similarity, shrinkage)
    return recommender.popularity_rank[items]


def check_k(k) -> None:
    """``RecsysError`` unless ``k`` is a positive whole number."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise RecsysError(f"k must be a positive whole number (how many movies to show), "
                          f"got {k!r}")  # fmt: skip


def check_liked(liked) -> None:
    """``ConfigError`` unless ``liked`` is a list of films: a lone title would be read as its
    letters ("Fargo": the films F, a, r, g, o)."""
    if isinstance(liked, str) or not isinstance(liked, list | tuple | np.ndarray):
        raise ConfigError(f"liked is a list of films (titles or ids), got {liked!r}: e.g. "
                          f"liked=['Fargo (1996)']")  # fmt: skip


def normalise_title(title: str) -> str:
    """Lower case, outer spaces removed, inner runs of spaces made one: how titles match."""
    return re.sub(r"\s+", " ", title.strip().lower())


ARTICLES = ("the", "a", "an", "les", "la", "le", "il", "el", "das", "der", "die")


def spoken_title(title: str, year: bool = True) -> str:
    """A normalised title as people say it: MovieLens' trailing article put first, and the
    year kept where it is there or dropped (``year=False``): "shining, the (1980)" -> "the
    shining (1980)", or "the shining". A year someone typed is kept: a wrong one finds nothing."""
    found = re.fullmatch(r"(.*?)\s*(\(\d{4}\))?", title)
    name, when = found.group(1), found.group(2) if year else None
    rest, _, article = name.rpartition(", ")
    name = f"{article} {rest}" if rest and article in ARTICLES else name
    return f"{name} {when}" if when else name


# -- the command line's text ---------------------------------------------------------------------
SCORES = {
    "user": "score: inner product of the user's and the film's vectors",
    "like": "score: inner product of the folded-in user's and the film's vectors",
    "pmi": "score: log(rated together / by chance) x c/(c+{shrinkage:g}), c: co-raters",
    "cosine": "score: cosine similarity of the model's film vectors",
}


def format_table(table: pd.DataFrame, value: str = "score", width: int = WIDTH) -> list[str]:
    """A result table as text lines for a terminal.

    Columns rank (when the table has one), id, title, genres and ``value``; text left-aligned,
    numbers right-aligned; the title carries the year already, so there is no year column.
    Long titles and genre lists are cut with an ellipsis, titles last.

    Parameters
    ----------
    table
        A table of ``BundleRecommender`` (``recommend``, ``similar_items``, ...,
        ``user_ratings``).
    value
        The number column: ``"score"`` (3 decimals) or ``"rating"`` (stars).
    width
        The most characters a line may have (at least 60).

    Returns
    -------
    list of str
        The header line and one line per row; nothing for an empty table.
    """
    if table.empty:
        return []
    ranks = [str(r) for r in table["rank"]] if "rank" in table else []
    ids = [str(m) for m in table["movie_id"]]
    values = [f"{v:.3f}" if value == "score" else f"{v:g}" for v in table[value]]
    rank_w = max(len("rank"), *map(len, ranks)) if ranks else 0
    id_w, value_w = max(2, *map(len, ids)), max(len(value), *map(len, values))
    space = width - (rank_w + 2 if ranks else 0) - id_w - value_w - 6  # title + genres
    title_w, genres_w = _shared_width(table["title"], table["genres"], space)
    columns = ([("rank", ranks, rank_w, ">")] if ranks else []) + [
        ("id", ids, id_w, ">"), ("title", list(table["title"]), title_w, "<"),
        ("genres", list(table["genres"]), genres_w, "<"), (value, values, value_w, ">")]
    lines = ["  ".join(f"{name:{align}{w}}" for name, _, w, align in columns)]
    lines += ["  ".join(f"{_cut(cells[i], w):{align}{w}}" for _, cells, w, align in columns)
              for i in range(len(table))]  # fmt: skip
    return [line.rstrip() for line in lines]


def _shared_width(titles: pd.Series, genres: pd.Series, space: int) -> tuple[int, int]:
    """Widths of the title and genres columns sharing ``space``: genres get up to 20, titles
    the rest, and genres whatever titles leave over."""
    longest_title, longest_genres = max(5, titles.str.len().max()), max(6, genres.str.len().max())
    title_w = min(longest_title, space - min(longest_genres, 20))
    return title_w, min(longest_genres, space - title_w)


def _cut(text: str, width: int = WIDTH) -> str:
    """``text`` cut to ``width`` characters, an ellipsis marking the cut."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _run(manifest: dict) -> str:
    """"model als, run 9950217b": the bundle's model and the first 8 characters of its run."""
    return f"model {manifest.get('model') or '?'}, run {str(manifest.get('run_id') or '?')[:8]}"


def _user_lines(demo: BundleRecommender, user_id: int, table: pd.DataFrame,
                favourites: int = 5) -> list[str]:  # fmt: skip
    """The ``--user`` output: whose and which run's recommendations, the user's top-rated
    films, then ``table`` under what its score means."""
    rated = demo.user_ratings(user_id)
    return [_cut(f"User {user_id} ({len(rated)} films rated) | {_run(demo.manifest)}"),
            "", "Their top-rated films:", *format_table(rated.head(favourites), value="rating"),
            "", _cut(f"Recommended: films user {user_id} has not rated"),
            _cut(SCORES["user"]), *format_table(table)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m recsys.demo", description=__doc__)
    parser.add_argument("--bundle", default="data/bundles/ml-100k")
    parser.add_argument("--user", type=int, help="recommend for this MovieLens user id")
    parser.add_argument("--like", action="append", default=[], help="a liked movie (repeat)")
    parser.add_argument("--similar", help="movies similar to this one (title or id)")
    parser.add_argument("--similarity", choices=SIMILARITIES, default="pmi",
                        help="for --similar: co-rating PMI (default) or the vectors' cosine")
    parser.add_argument("-k", type=positive_int, default=10, help="how many movies (default 10)")
    args = parser.parse_args(argv)
    if args.user is None and not args.like and args.similar is None:
        parser.error("give --user, --like (one or more) or --similar")
    try:
        demo = BundleRecommender.load(args.bundle)
        lines = _query_lines(demo, args)
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def _recommend_for_user(demo: BundleRecommender, user_id: int, k: int) -> pd.DataFrame:
    """``demo.recommend``, whose error for an unknown user names the command line's way to
    recommend for someone new (``--like``) instead of the Python method."""
    try:
        return demo.recommend(user_id, k)
    except NotFoundError as error:
        raise NotFoundError(f"unknown user {user_id}: {error.suggestions[0]}; for someone new, "
                            'name films they like: --like "Fargo (1996)" (repeat --like)',
                            error.suggestions) from None  # fmt: skip


def _query_lines(demo: BundleRecommender, args) -> list[str]:
    """The output of one query of the command line."""
    if args.user is not None:
        table = _recommend_for_user(demo, args.user, args.k)
        lines = _user_lines(demo, args.user, table)
    elif args.like:
        table = demo.recommend_for_new_user(args.like, args.k)
        liked = "; ".join(demo.title(m) for m in args.like)
        lines = [_cut(f"A new user who likes {len(args.like)} films | {_run(demo.manifest)}"),
                 _cut(f"Liked: {liked}"), _cut(SCORES["like"]), *format_table(table)]
    else:
        table = demo.similar_items(args.similar, args.k, args.similarity)
        run = str(demo.manifest.get("run_id") or "?")[:8]
        source = (f"who rated what (bundle of run {run})" if args.similarity == "pmi"
                  else _run(demo.manifest))  # fmt: skip
        lines = [_cut(f"Films like {demo.title(args.similar)} | {source}"),
                 _cut(SCORES[args.similarity].format(shrinkage=PMI_SHRINKAGE)),
                 *format_table(table)]  # fmt: skip
    if len(table) < args.k:
        lines.append(f"({len(table)} movies: all there are left to show, fewer than -k "
                     f"{args.k})")  # fmt: skip
    return lines


if __name__ == "__main__":
    sys.exit(main())
