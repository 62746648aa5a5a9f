"""Cold start: users never seen in training, scored from their demographics or from the first
few ratings they give (protocol ``cold_users``, conf/protocol/cold_users.yaml).

    python -m recsys.cold_start [--models popular two_tower als ease itemknn multvae
                                 first_ratings]
                                [--seeds 1 2 3 4 5] [--data-dir data] [--out reports]
                                [--readme README.md] [--update] [--jobs 2]
                                [OVERRIDE ...]

For each seed, the ``cold_users`` split holds 10 % of the users out with all their ratings.
Every model is fitted as ``recsys.train`` fits it (settings and epochs chosen on the other
users' validation carve-out, then refit on all their ratings), except for the settings of
``protocol.choose`` it has: those only new users can judge, so they are chosen on users held
out of the training part (``choose_settings``). Each held-out user is then scored by every
route a model offers:

- ``popular``: the training popularity list, the same for everyone;
- ``demographics``: the two-tower user tower from age, gender, occupation and zip alone;
- ``fold-in``: a model that scores users from a row of items they liked (``score_fold_in``:
  ALS's user step against its item vectors, EASE's and ItemKNN's item-item weights, Mult-VAE's
  encoder) given the user's first ``r`` ratings in time, for each ``r`` of ``protocol.revealed``
  above 0;
- ``fold-in + popular``: the same fold-in with the popular list as a prior, for the few
  ratings it is given (``with_prior``: both standardised per user, the popular list weighted by
  one of ``protocol.prior_weights``, chosen per count on users held out of the training part,
  as ``protocol.choose`` settings are: ``choose_prior_weights``);
- ``first_ratings``, a baseline of this tool's own rather than a model of conf/model, fitted
  for the protocol's own task on the training users' ratings in time order (``FirstRatings``):
  ``later popular``, the items they rate after their first ``max(revealed)``, and
  ``regression``, a ridge regression of those later ratings on the first ``r``, its lambda
  chosen per count among ``protocol.first_ratings_regularization`` on the same held-out
  training users.

Every route at every count is judged on the same items: the user's ratings after the largest
count (users with no rating beyond it are left out, and counted). Items a route was told about
are never recommended back. Writes ``cold_start.md`` (NDCG@10, mean ± 95 % CI over seeds, a
paired test over seeds against each column's best, and the comparisons the protocol is for,
over seeds and over (seed, user) pairs: ``markdown``), ``cold_start.json`` (every seed's
value of every metric and each held-out user's NDCG@10, with the split fingerprints) and
``figures/cold_start.png|pdf`` (NDCG@10 against ratings revealed) into ``--out``;
``cold_start.json`` also records each seed's chosen settings and every candidate's score.

``--update`` trains only ``--models`` and keeps every other model's rows (and chosen settings)
from the existing ``cold_start.json`` (a model whose default changed, without hours of the
others again); it is refused, before any training, unless the kept rows are of the same
seeds, revealed counts and splits (their fingerprints), hold per-user values, and were made
with the settings this run gives their models (``row_settings``: the model's YAML, the
protocol's grids it chooses from, the overrides; ``cold_start.json`` records them). A change
of code is not detected: rerun every model after one that moves numbers.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import re
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
from omegaconf import DictConfig, ListConfig, OmegaConf

from recsys.cache import model_settings
from recsys.cli import ArgumentParser, positive_int
from recsys.config import (
    build,
    check_ks,
    check_overrides,
    compose_config,
    is_seed,
    load_split,
    model_class,
    model_names,
)
from recsys.data import Interactions
from recsys.data.features import user_features
from recsys.docs import read_readme, replace_section
from recsys.errors import ConfigError, DataError, RecsysError
from recsys.files import atomic_path, atomic_write_text
from recsys.metrics import evaluate, ranking_metrics
from recsys.models.base import mask_excluded, top_k
from recsys.models.ensemble import standardised
from recsys.models.popular import PopularRecommender
from recsys.report import Cell, confidence_interval, format_cell, paired_p_value, significance
from recsys.split import Split
from recsys.train import check_fit_memory, fit_selected, model_factory

MODELS = ("popular", "two_tower", "als", "ease", "itemknn", "multvae", "first_ratings")
K = 10  # the table's and the figure's cut-off
# a row's NDCG@K of each held-out user, in the order of ``cold_users``' users (rows pair by
# that place within a seed: the same split and revealed counts give the same users)
PER_USER = f"per_user/ndcg@{K}"
ALPHA = 0.05  # the table's significance level
Row = tuple[str, str, int]  # (model, route, revealed count): one cell of the table
PRIOR = "fold-in + popular"  # the route of a fold-in with the popular list as a prior
# a baseline of this tool's own (not a model of conf/model): fitted on the training users'
# ratings in time order for the protocol's task, the later ratings from the first few
FIRST_RATINGS = "first_ratings"
LATER = "later popular"  # its list of the items rated after a training user's largest count
REGRESSION = "regression"  # its ridge regression of those later ratings on the first r
# what a choice records per revealed count, under its key: the setting's name in the note
PER_COUNT = {"prior": "popular weight", "regularization": "regularization"}
# the figure's fold-in lines (grey and purple are the popular and demographics lists')
FOLD_IN_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:brown", "tab:pink",
                   "tab:olive", "tab:cyan")  # fmt: skip
INNER = 1  # mixed into the run's seed for the split that chooses cold-start settings


@dataclass(frozen=True)
class ColdUsers:
    """The held-out users of one split, their revealed ratings and what they are judged on.

    ``users`` index the full user space; ``revealed[r]`` and ``targets`` are ``(len(users),
    n_items)`` binary CSR matrices: each user's first ``r`` ratings in time, and the ratings
    after the largest count."""

    users: np.ndarray
    revealed: dict[int, sp.csr_matrix]
    targets: sp.csr_matrix
    left_out: int  # held-out users with no rating beyond the largest count


def cold_users(test, counts: list[int]) -> ColdUsers:
    """Split each test user's ratings by time (ties by item) into the first ``r`` for every
    ``r`` in ``counts`` and the targets after ``max(counts)``."""
    largest = max(counts)
    order = np.lexsort((test.item, test.timestamp, test.user))
    user, item = test.user[order], test.item[order]
    n_rated = np.bincount(user, minlength=test.n_users)
    first = np.cumsum(n_rated) - n_rated
    position = np.arange(len(user)) - first[user]  # 0 for each user's first rating
    users = np.flatnonzero(n_rated > largest)
    row = np.full(test.n_users, -1)
    row[users] = np.arange(len(users))
    keep = row[user] >= 0

    def matrix(mask: np.ndarray) -> sp.csr_matrix:
        mask &= keep
        ones = np.ones(mask.sum(), dtype=np.float32)
        return sp.csr_matrix((ones, (row[user[mask]], item[mask])),
                             shape=(len(users), test.n_items))  # fmt: skip

    revealed = {r: matrix(position < r) for r in counts}
    left_out = int(np.count_nonzero(n_rated)) - len(users)
    return ColdUsers(users, revealed, matrix(position >= largest), left_out)


def route(model_type: type) -> str | None:
    """How a model of ``model_type`` scores an unseen user, or ``None`` if it cannot."""
    if issubclass(model_type, PopularRecommender):
        return "popular"
    if hasattr(model_type, "score_new_users"):
        return "demographics"
    if hasattr(model_type, "score_fold_in"):
        return "fold-in"
    return None


def route_scores(model, cold: ColdUsers, r: int, data) -> tuple[str, np.ndarray] | None:
    """``(route, (len(cold.users), n_items) scores)`` of the model's way to score these users
    with ``r`` ratings revealed, or ``None`` if it has none at that count."""
    way = route(type(model))
    if way == "popular":
        return way, np.broadcast_to(model.score(cold.users[:1]), cold.targets.shape)
    if way == "demographics":
        return way, model.score_new_users(user_features(data.users).rows(cold.users))
    if way == "fold-in" and r > 0:
        return way, model.score_fold_in(cold.revealed[r])
    return None


def check_models(names: list[str]) -> None:
    """Every model named can score an unseen user (``ConfigError`` naming the first that
    cannot), checked before any training; ``first_ratings`` is this tool's own."""
    for name in names:
        if name == FIRST_RATINGS:
            continue
        check_overrides([f"model={name}"])
        if route(model_class(compose_config([f"model={name}"]).model)) is None:
            raise ConfigError(f"model {name} has no way to score an unseen user (no "
                              f"score_new_users or score_fold_in): leave it out of --models")


def route_metrics(model, cold: ColdUsers, r: int, data,
                  ks: list[int]) -> tuple[str, dict[str, np.ndarray]] | None:  # fmt: skip
    """``(route, per-user metrics at ks)`` of the model's way to score the ``cold`` users with
    ``r`` ratings revealed (items revealed are not recommended back), or ``None`` if it has none
    at that count."""
    scored = route_scores(model, cold, r, data)
    if scored is None:
        return None
    route, scores = scored
    return route, ranked_metrics(scores, cold, r, ks)


def ranked_metrics(scores: np.ndarray, cold: ColdUsers, r: int,
                   ks: list[int]) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-user metrics at ``ks`` of ``(len(cold.users), n_items)`` scores against the targets,
    the ``r`` revealed items never recommended back."""
    scores = np.array(scores, dtype=np.float32)  # a copy: masking writes into it
    mask_excluded(scores, cold.revealed[r])
    ranking = top_k(scores, max(ks))[0]
    return ranking_metrics(ranking, cold.targets, ks)


def with_prior(scores: np.ndarray, revealed: sp.csr_matrix, popularity: np.ndarray,
               weight: float) -> np.ndarray:  # fmt: skip
    """``z(scores) + weight * z(popularity)``: fold-in scores with the popular list
    as a prior, ``z`` standardising each user's row over the items not ``revealed`` (its mean
    0 and spread 1 there; ``recsys.models.ensemble.standardised``). ``popularity``: how many
    training users rated each item. Weight 0 ranks as the fold-in alone; the larger the weight,
    the closer to the popular list, which every fold-in falls below with few ratings (the
    table's 1-revealed column)."""
    blended = standardised(scores, revealed)
    if weight:
        prior = np.broadcast_to(np.asarray(popularity, dtype=np.float32), scores.shape)
        blended += np.float32(weight) * standardised(prior, revealed)
    return blended


# what the tool's own arguments set, and so no override may (a seed= would replace every --seeds)
OWNED = {"seed": "give the seeds with --seeds", "ks": "give the cut-offs with --ks",
         "model": "give the models with --models",
         "protocol": "the tool runs protocol cold_users alone; change its values with "
                     "protocol.KEY=..."}  # fmt: skip


def check_arguments(args) -> None:
    """The command line's own values, before any work: seeds in numpy's range, ``--out`` a
    folder (or none yet), and no override of what an argument sets (``OWNED``)."""
    bad = [seed for seed in args.seeds if not is_seed(seed)]
    if bad:
        raise ConfigError(f"--seeds {' '.join(map(str, bad))}: a seed is an integer from 0 to "
                          f"2**32 - 1")  # fmt: skip
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file, not a folder: choose another --out")
    for override in args.overrides:
        key = override.partition("=")[0].lstrip("+~")
        if key in OWNED and override != "protocol=cold_users":  # its own, said again
            raise ConfigError(f"`{override}`: {key} is the tool's to set: {OWNED[key]}")


def check_revealed(values) -> list[int]:
    """``protocol.revealed``: the counts of first ratings revealed, distinct whole numbers >= 0
    in increasing order, the table's columns (``ConfigError`` otherwise)."""
    counts = list(values) if isinstance(values, ListConfig | list) else None
    if not counts or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0
                             for r in counts) or counts != sorted(set(counts)):  # fmt: skip
        raise ConfigError(f"protocol.revealed={values}: expected distinct whole numbers >= 0 in "
                          f"increasing order, e.g. [0,1,3,5]")  # fmt: skip
    return counts


def check_sizes(protocol: list[str], seed: int, ks: list[int], largest: int) -> None:
    """``ConfigError`` before any training where a cut-off of ``ks`` exceeds the catalogue, or
    no held-out user of ``seed``'s split rated more than ``largest`` films: nothing would be
    left to judge the revealed counts by (one split loaded: seconds; training takes hours)."""
    test = load_split(compose_config([*protocol, f"seed={seed}"])).split.test
    check_ks(ks, test.n_items)
    if not (np.bincount(test.user, minlength=test.n_users) > largest).any():
        raise ConfigError(f"protocol.revealed: no held-out user of seed {seed} rated more than "
                          f"{largest} films, the most it reveals: lower it")  # fmt: skip


def check_grid(key: str, values, positive: bool = False) -> list[float]:
    """``protocol.<key>``, a grid to choose from per count, as floats; ``ConfigError`` unless a
    list of numbers >= 0 (> 0 if ``positive``)."""
    if isinstance(values, str) or not isinstance(values, Sequence) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and (v > 0 or (v == 0
                                                                          and not positive))
            for v in values):  # fmt: skip
        raise ConfigError(f"protocol.{key}={values} must be a list of numbers "
                          f"{'>' if positive else '>='} 0 (the values to choose among per "
                          f"revealed count; [] for none)")  # fmt: skip
    return [float(v) for v in values]


def check_regularization(values) -> list[float]:
    """``protocol.first_ratings_regularization``: lambdas > 0 (0 leaves the ridge singular)."""
    return check_grid("first_ratings_regularization", values, positive=True)


def choose_per_count(counts: list[int], values: list[float], objective) -> dict:
    """``{"chosen": [{"revealed": r, "value": v}, ...], "candidates": [{"revealed": r,
    "value": v, "objective": objective(r, v)}, ...]}``: each count's best value (the first
    listed on a tie), every value judged at every count."""
    chosen, judged = [], []
    for r in counts:
        objectives = [float(objective(r, v)) for v in values]
        judged += [{"revealed": r, "value": v, "objective": o}
                   for v, o in zip(values, objectives, strict=True)]  # fmt: skip
        chosen.append({"revealed": r, "value": values[int(np.argmax(objectives))]})
    return {"chosen": chosen, "candidates": judged}


def chosen_values(record: dict) -> dict[int, float]:
    """``{revealed count: value}`` of a ``choose_per_count`` record (``{}``: none)."""
    return {c["revealed"]: c["value"] for c in record.get("chosen", [])}


def cold_objective(model, cold: ColdUsers, revealed: list[int], data) -> float:
    """Mean NDCG@K of the ``cold`` users over the ``revealed`` counts the model scores at."""
    values = []
    for r in revealed:
        measured = route_metrics(model, cold, r, data, [K])
        if measured is not None:
            values.append(measured[1][f"ndcg@{K}"].mean())
    if not values:
        raise ConfigError(f"{type(model).__name__} scores new users at none of the revealed "
                          f"counts {revealed}: it has nothing to choose settings by")  # fmt: skip
    return float(np.mean(values))


def candidates(cfg) -> list[dict]:
    """The settings ``protocol.choose`` offers this model (the keys its config has): every
    combination of the model's own value and the listed ones, its own settings first."""
    grid = {key: list(dict.fromkeys([cfg.model[key], *values]))
            for key, values in cfg.protocol.get("choose", {}).items() if key in cfg.model}
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def choose_settings(cfg, prepared, fresh_model) -> dict:
    """The model's settings of ``protocol.choose``, chosen for cold start on users held out of
    the training part: ``{"chosen": {key: value}, "candidates": [{key: value, "objective":
    cold NDCG@K}, ...]}`` (empty without settings to choose).

    The users that are not test users (all their train and validation rows) are split again
    by the protocol's own splitter, with a seed derived from the run's: a share of them held
    out whole, the rest's validation carve-out for early stopping. Each candidate is fitted on
    that inner training part and judged by ``cold_objective`` on the inner held-out users; the
    best (the model's own settings on a tie) is chosen. The test users are never looked at."""
    settings = candidates(cfg)
    if len(settings) <= 1:
        return {}
    inner, cold = inner_users(cfg, prepared, ", ".join(cfg.protocol.choose))
    judged = []
    for setting in settings:
        fitted = fit_selected(fresh_model(setting), inner, cfg.eval_batch_size, cfg.objective)
        objective = cold_objective(fitted.model, cold, list(cfg.protocol.revealed),
                                   prepared.data)  # fmt: skip
        judged.append(setting | {"objective": objective})
    best = max(range(len(judged)), key=lambda i: judged[i]["objective"])  # the first on a tie
    return {"chosen": settings[best], "candidates": judged}


def inner_users(cfg, prepared, what: str) -> tuple[Split, ColdUsers]:
    """The split that chooses cold-start settings, and its held-out users: the users that are
    not test users (all their train and validation rows) split again by the protocol's own
    splitter, with a seed derived from the run's. ``DataError`` naming ``what`` is chosen if
    none of its held-out users has a rating beyond the largest revealed count."""
    others = held_in(prepared.interactions, prepared.split)
    inner = build(cfg.split, "split")(others, seed=np.random.default_rng([cfg.seed, INNER]))
    cold = cold_users(inner.test, list(cfg.protocol.revealed))
    if len(cold.users) == 0:
        raise DataError(f"choosing {what} for cold start: none of the users held out of the "
                        f"training part has more than {max(cfg.protocol.revealed)} ratings to "
                        f"judge by: raise split.user_ratio or use more data")  # fmt: skip
    return inner, cold


def popularity(matrix: sp.csr_matrix) -> np.ndarray:
    """``(n_items,)`` the popular list's scores when fitted on the binary ``matrix``: how many
    of its users rated each item."""
    return PopularRecommender(seed=0).fit(sp.csr_matrix(matrix)).item_popularity


def choose_prior_weights(cfg, prepared, fresh_model) -> dict:
    """The popular list's weight in ``with_prior`` for each revealed count above 0, chosen
    among ``protocol.prior_weights`` on users held out of the training part (``inner_users``,
    as ``choose_settings`` does; ``choose_per_count``'s record, empty without weights or counts
    to choose for). The model is fitted once on the inner training part, and the prior is the
    popular list of that part."""
    weights = check_grid("prior_weights", cfg.protocol.get("prior_weights", []))
    counts = [r for r in cfg.protocol.revealed if r > 0]
    if not weights or not counts:
        return {}
    inner, cold = inner_users(cfg, prepared, "protocol.prior_weights (or set it to [])")
    model = fit_selected(fresh_model(), inner, cfg.eval_batch_size, cfg.objective).model
    prior = popularity(inner.train.to_csr())  # what the model was fitted on
    scores = {r: model.score_fold_in(cold.revealed[r]) for r in counts}

    def objective(r: int, weight: float) -> float:
        blended = with_prior(scores[r], cold.revealed[r], prior, weight)
        return ranked_metrics(blended, cold, r, [K])[f"ndcg@{K}"].mean()

    return choose_per_count(counts, weights, objective)


@dataclass(frozen=True)
class FirstRatings:
    """What training users rate after their first ratings, from those first ratings.

    Fitted on training users with more than ``largest`` ratings, each user's ratings in time
    order (``cold_users``' rule): ``Y`` their ratings after the ``largest``-th (binary, ``(U,
    n_items)``), ``X_r`` their first ``r``. ``later = mean_u Y_u``, how often an item is rated
    later; ``B_r = (X_r^T X_r + lambda I)^{-1} X_r^T (Y - 1 later^T)``, a ridge regression of
    the later ratings, centred, on the first ``r``. A new user's scores from their first ``r``
    items ``x``: ``later + x B_r``."""

    later: np.ndarray  # (n_items,)
    weights: dict[int, np.ndarray]  # r -> (n_items, n_items) B_r

    @classmethod
    def fit(cls, history: Interactions, regularization: dict[int, float],
            largest: int) -> FirstRatings:  # fmt: skip
        """``regularization``: ``{r: lambda}`` for each count to fit a ``B_r`` for."""
        users = cold_users(history, [*regularization, largest])
        if len(users.users) == 0:
            raise DataError(f"{FIRST_RATINGS}: no training user has more than {largest} "
                            f"ratings to learn the later ones from: use more data")  # fmt: skip
        targets = users.targets
        later = np.asarray(targets.mean(axis=0), dtype=np.float64).ravel()
        weights = {}
        for r, lam in regularization.items():
            first = users.revealed[r].astype(np.float64)
            gram = (first.T @ first).toarray() + lam * np.eye(first.shape[1])
            right = (first.T @ targets).toarray() - np.outer(first.sum(axis=0), later)
            weights[r] = np.linalg.solve(gram, right)
        return cls(later, weights)

    def score(self, revealed: sp.csr_matrix, r: int) -> np.ndarray:
        """``(len(revealed), n_items)`` scores of new users from their first ``r`` items (``r``
        0: the ``later`` list for everyone)."""
        base = np.broadcast_to(self.later, revealed.shape)
        if r == 0:
            return base
        return base + sp.csr_matrix(revealed, dtype=np.float64) @ self.weights[r]


def held_in(interactions: Interactions, split: Split) -> Interactions:
    """The rows of ``interactions`` of the users ``split`` does not hold out (its test part's
    users: every rating of theirs is left out)."""
    held_out = np.zeros(interactions.n_users, dtype=bool)
    held_out[split.test.user] = True
    return interactions.subset(~held_out[interactions.user])


def evaluate_first_ratings(cfg, prepared, ks: list[int]) -> tuple[list, ColdUsers, dict]:
    """``FirstRatings`` on one seed: its lambda for each revealed count above 0 chosen among
    ``protocol.first_ratings_regularization`` on users held out of the training part (fitted on
    the other training users, as ``choose_prior_weights`` does), then refit on every training
    user and judged on the held-out ones. Returns ``(r, route, per-user metrics)`` triples, the
    held-out users, and the choice (``choose_per_count``'s record under
    ``"regularization"``)."""
    grid = check_regularization(cfg.protocol.get("first_ratings_regularization", []))
    if not grid:
        raise ConfigError(f"{FIRST_RATINGS} needs protocol.first_ratings_regularization, a "
                          f"list of numbers > 0 to choose from: set one, or leave "
                          f"{FIRST_RATINGS} out of --models")  # fmt: skip
    revealed = list(cfg.protocol.revealed)
    counts, largest = [r for r in revealed if r > 0], max(revealed)
    inner, inner_cold = inner_users(cfg, prepared, "protocol.first_ratings_regularization")
    history = held_in(held_in(prepared.interactions, prepared.split), inner)
    fits = {lam: FirstRatings.fit(history, dict.fromkeys(counts, lam), largest) for lam in grid}

    def objective(r: int, lam: float) -> float:
        scores = fits[lam].score(inner_cold.revealed[r], r)
        return ranked_metrics(scores, inner_cold, r, [K])[f"ndcg@{K}"].mean()

    choice = choose_per_count(counts, grid, objective)
    final = FirstRatings.fit(held_in(prepared.interactions, prepared.split),
                             chosen_values(choice), largest)  # fmt: skip
    cold = cold_users(prepared.split.test, revealed)
    measured = []
    for r in revealed:
        measured.append((r, LATER, ranked_metrics(final.score(cold.revealed[r], 0), cold, r, ks)))
        if r > 0:
            measured.append((r, REGRESSION, ranked_metrics(final.score(cold.revealed[r], r),
                                                           cold, r, ks)))  # fmt: skip
    # no settings of its own: "chosen" and "candidates" empty, as every recorded choice has them
    return measured, cold, {"chosen": {}, "candidates": [], "regularization": choice}


def run_config(name: str, seed: int, overrides: list[str]) -> DictConfig:
    """The composed config of one model (or the ``first_ratings`` baseline) on one seed's
    ``cold_users`` split, ``overrides`` checked (``ConfigError`` naming a bad one)."""
    # the baseline has no model config; any model composes the protocol, split and data
    composed = "popular" if name == FIRST_RATINGS else name
    arguments = ["protocol=cold_users", f"model={composed}", f"seed={seed}",
                 *model_overrides(composed, overrides)]  # fmt: skip
    check_overrides(arguments)
    return compose_config(arguments)


def row_settings(name: str, overrides: list[str]) -> dict:
    """What a model's (or the baseline's) rows depend on besides the code, the seeds, the
    revealed counts and the splits (``kept_rows`` and ``check_splits`` check those): its
    resolved config less cosmetic keys, the protocol's refit and the selection objective, and
    the grids it chooses from: its ``protocol.choose`` keys, ``prior_weights`` for a fold-in,
    ``first_ratings_regularization`` for the baseline. ``cold_start.json`` records them per
    model, so ``--update`` can refuse to keep rows made under other settings."""
    cfg = run_config(name, 0, overrides)
    protocol = OmegaConf.to_container(cfg.protocol, resolve=True)
    settings = {"refit": protocol["refit"], "objective": cfg.objective}
    if name == FIRST_RATINGS:
        return settings | {"first_ratings_regularization":
                           protocol.get("first_ratings_regularization", [])}  # fmt: skip
    model = without_threads(model_settings(cfg.model))
    settings |= {"model": model, "choose": {key: values for key, values in protocol.get(
        "choose", {}).items() if key in model}}  # fmt: skip
    if route(model_class(cfg.model)) == "fold-in":
        settings["prior_weights"] = protocol.get("prior_weights", [])
    return settings


def evaluate_seed(name: str, seed: int, overrides: list[str],
                  ks: list[int]) -> tuple[pd.DataFrame, dict]:  # fmt: skip
    """One model (or the ``first_ratings`` baseline) on one seed's ``cold_users`` split: a row
    per (route, revealed count) with the mean of every metric over the held-out users, and what
    was chosen for cold start: a model's settings (``choose_settings``), a fold-in's prior
    weights under ``"prior"`` (``choose_prior_weights``), the baseline's lambdas under
    ``"regularization"``; ``{}`` for nothing chosen."""
    cfg = run_config(name, seed, overrides)
    prepared = load_split(cfg)
    if name == FIRST_RATINGS:
        measured, cold, choice = evaluate_first_ratings(cfg, prepared, ks)
        validation = float("nan")  # no warm user is ranked
    else:
        measured, cold, choice, validation = evaluate_model(cfg, prepared, ks)
    rows = [{"model": name, "route": way, "revealed": r, "seed": seed, "users": len(cold.users),
             "left_out": cold.left_out, "fingerprint": prepared.split.fingerprint,
             f"val/ndcg@{K}": validation}
            | {m: float(v.mean()) for m, v in metrics.items()}
            | {PER_USER: metrics[f"ndcg@{K}"].tolist()}
            for r, way, metrics in measured]  # fmt: skip
    if choice:
        choice = {"model": name, "seed": seed} | choice
    return pd.DataFrame(rows), choice


def evaluate_model(cfg, prepared, ks: list[int]) -> tuple[list, ColdUsers, dict, float]:
    """``evaluate_seed`` of a model of conf/model: ``(r, route, per-user metrics)`` triples,
    the held-out users, the choice and the warm validation NDCG@K."""
    split = prepared.split
    configured = model_factory(cfg, prepared.data)
    # before any fit, on the configured settings
    check_fit_memory(configured(), split, cfg.protocol.refit, cfg.eval_batch_size,
                     cfg.model_name, cfg.memory_gb)  # fmt: skip
    choice = choose_settings(cfg, prepared, configured)
    chosen = choice.get("chosen", {})

    def fresh_model(overrides: dict | None = None):
        return configured(chosen | (overrides or {}))

    prior_choice = (choose_prior_weights(cfg, prepared, fresh_model)
                    if route(model_class(cfg.model)) == "fold-in" else {})  # fmt: skip
    refit = fresh_model if cfg.protocol.refit else None
    # fitted as recsys.train fits it; test here is the cold users, ranked below, not by id
    model = fresh_model()
    fitted = fit_selected(model, split, cfg.eval_batch_size, cfg.objective,
                          refit=refit)  # fmt: skip
    train = split.train.to_csr()
    validation = evaluate(fitted.model, split.validation.to_csr(), train, [K],
                          batch_size=cfg.eval_batch_size)  # fmt: skip
    cold = cold_users(split.test, list(cfg.protocol.revealed))
    weight = chosen_values(prior_choice)
    if weight:  # the popular list of what the final model was fitted on
        prior = popularity(train + split.validation.to_csr() if fitted.metrics["train/refit"]
                           else train)  # fmt: skip
    measured = []
    for r in cfg.protocol.revealed:
        scored = route_scores(fitted.final, cold, r, prepared.data)
        if scored is None:
            continue
        way, scores = scored
        measured.append((r, way, ranked_metrics(scores, cold, r, ks)))
        if way == "fold-in" and r in weight:
            blended = with_prior(scores, cold.revealed[r], prior, weight[r])
            measured.append((r, PRIOR, ranked_metrics(blended, cold, r, ks)))
    if prior_choice:
        choice = {"chosen": chosen, "candidates": choice.get("candidates", []),
                  "prior": prior_choice}  # fmt: skip
    return measured, cold, choice, validation.summary[f"ndcg@{K}"]


def check_model_overrides(overrides: list[str], names: list[str]) -> None:
    """``ConfigError`` for a ``model.KEY...`` override whose ``KEY`` none of the models
    ``names`` has (a typo: ``model_overrides`` would drop it for every model)."""
    keys = set().union(*(compose_config([f"model={name}"]).model for name in names
                         if name != FIRST_RATINGS))  # fmt: skip
    for override in overrides:
        key = _model_key(override)
        if key is not None and key not in keys:
            raise ConfigError(f"{override.split('=')[0]}: none of {', '.join(names)} has "
                              f"the key {key!r} (misspelt, or meant for a model this run does "
                              f"not train): drop it, or add that model to --models")


def model_overrides(name: str, overrides: list[str]) -> list[str]:
    """``overrides`` without the ``model.KEY...`` ones whose ``KEY`` model ``name`` lacks, so
    ``model.trainer.epochs=5`` reaches the torch models and leaves EASE alone."""
    settings = compose_config([f"model={name}"]).model
    return [o for o in overrides if _model_key(o) in (None, *settings)]


def _model_key(override: str) -> str | None:
    """``KEY`` of a ``model.KEY...=value`` override, ``None`` for any other override."""
    return override.split("=")[0].split(".")[1] if override.startswith("model.") else None


def summary_table(results: pd.DataFrame, metric: str = f"ndcg@{K}") -> pd.DataFrame:
    """Mean and 95 % CI half-width of ``metric`` over seeds, per (model, route, revealed)."""
    grouped = results.groupby(["model", "route", "revealed"], sort=False)[metric]
    return grouped.agg(mean="mean", half_width=confidence_interval, seeds="count").reset_index()


def markdown(results: pd.DataFrame, choices: list[dict]) -> str:
    """The table: one row per model and route, one column per revealed count, each column's
    best mean in bold and a † on the rows it is significantly above (``marks``); then a note on
    the protocol and the settings each model chose for cold start (``choices``), and the table
    of the comparisons the protocol is for (``comparisons``)."""
    table = summary_table(results)
    counts = sorted(results["revealed"].unique())
    seeds = ", ".join(str(s) for s in sorted(results["seed"].unique()))
    marked = marks(results)
    lines = ["| model | route | " + " | ".join(f"{r} revealed" for r in counts) + " |",
             "| --- | --- | " + " | ".join("---" for _ in counts) + " |"]  # fmt: skip
    for (model, route), rows in table.groupby(["model", "route"], sort=False):
        cells = {r: format_cell(Cell(m, h, n, *marked.get((model, route, r), (False, False))))
                 for r, m, h, n in zip(rows["revealed"], rows["mean"], rows["half_width"],
                                       rows["seeds"], strict=True)}  # fmt: skip
        lines.append(f"| {model} | {route} | "
                     + " | ".join(cells.get(r, "—") for r in counts) + " |")  # fmt: skip
    users = results.groupby("seed")["users"].first()
    left_out = results.groupby("seed")["left_out"].first()
    note = (f"Test NDCG@{K} of users never seen in training (protocol `cold_users`: 10 % of the "
            f"users held out with all their ratings; {users.mean():.0f} such users per seed, "
            f"{left_out.mean():.0f} left out for having no rating beyond the largest count), "
            f"mean ± half-width of the 95 % confidence interval over seeds {seeds}. A user's "
            f"first *r* ratings in time are revealed; every column is judged on the same "
            f"items, the ratings after the largest *r*. Bold: the best mean of a column. †: "
            f"that best mean is significantly above this row's (paired t-test over the seeds' "
            f"means, which vary with the split, its held-out users and the fit; "
            f"Holm-corrected over the column's rows, α = {ALPHA}). Generated by "
            f"`python -m recsys.cold_start`.")  # fmt: skip
    if (results["route"] == PRIOR).any():
        note += (f" {PRIOR}: the fold-in's scores plus the popular list's (how many users of "
                 f"the ratings the model was fitted on rated each item), both standardised per "
                 f"user over the items not revealed, the popular list weighted as chosen below "
                 f"(0 is the fold-in alone, and the largest weights all but the popular "
                 f"list).")  # fmt: skip
    return ("\n".join(lines) + "\n\n" + note + chosen_note(choices)
            + comparisons(results))  # fmt: skip


def marks(results: pd.DataFrame) -> dict[Row, tuple[bool, bool]]:
    """``(bold, dagger)`` of each row at each revealed count: bold for the column's best mean
    (every row that ties it to the 4 decimals shown; none in a column of one row), † for the
    rows whose seed means it is significantly above (``significance``: paired t-test over
    seeds, Holm over the column, ``ALPHA``; none with fewer than two seeds)."""
    marked = {}
    for r, column in results.groupby("revealed", sort=False):
        means = column.pivot(index="seed", columns=["model", "route"], values=f"ndcg@{K}")
        means.columns = [_row_name((model, route, r)) for model, route in means.columns]
        keys = {_row_name((model, route, r)): (model, route, r)
                for model, route in zip(column["model"], column["route"], strict=True)}  # fmt: skip
        if len(keys) < 2:
            continue
        average = means.mean()
        best = average.idxmax()
        shown = average.round(4)  # rows that tie as the table prints them are all bold
        marked |= {keys[name]: (True, False) for name in average.index
                   if shown[name] == shown[best]}  # fmt: skip
        if len(means) > 1:
            better = significance(means, best, ALPHA, "ttest")
            marked |= {keys[name]: (False, True) for name, above in better.items() if above}
    return marked


def comparisons(results: pd.DataFrame) -> str:
    """A table of the comparisons the protocol is for, each within one revealed count (so both
    lists leave out the same revealed items): the demographics lists against the popular ones
    at 0, and every fold-in (with and without the prior, and the baseline's regression) against
    every demographics list at the largest count. Each: the
    difference of the means; over seeds, its 95 % CI half-width and the paired t-test p; over
    pairs, the same over every seed's held-out users pooled and paired (``per_user``), and the
    pairs won and lost."""
    largest = results["revealed"].max()
    rows = list(dict.fromkeys(zip(results["model"], results["route"], results["revealed"],
                                  strict=True)))  # fmt: skip
    pairs = [((m, route, 0), base) for m, route, r in rows if route == "demographics" and r == 0
             for base in rows if base[1] in ("popular", LATER) and base[2] == 0]  # fmt: skip
    pairs += [((m, route, largest), base) for m, route, r in rows
              if route in ("fold-in", PRIOR, REGRESSION) and r == largest
              for base in rows if base[1] == "demographics" and base[2] == largest]  # fmt: skip
    if not pairs:
        return ""
    per_seed = results.set_index(["model", "route", "revealed", "seed"])[f"ndcg@{K}"].sort_index()
    values = per_user(results)
    lines = ["| comparison | difference | ± over seeds | p over seeds | ± over pairs "
             "| p over pairs | pairs won / lost |", "|" + " --- |" * 7]  # fmt: skip
    for key, base in pairs:
        if not values[key].index.equals(values[base].index):
            raise ValueError(f"{key} and {base} are not of the same held-out users")
        seeds = per_seed[key] - per_seed[base]
        users = values[key] - values[base]
        lines.append(f"| {_row_name(key)} − {_row_name(base)} | {seeds.mean():+.4f} | "
                     f"{_half_width(seeds)} | {_p(per_seed[key], per_seed[base])} | "
                     f"{_half_width(users)} | {_p(values[key], values[base])} | "
                     f"{np.count_nonzero(users > 0)} / {np.count_nonzero(users < 0)} |")
    return ("\n\nThe comparisons the protocol is for, each within one count (so both lists "
            "leave out the same revealed items). Difference: of the two rows' means over seeds. "
            "Over seeds: the 95 % CI half-width and paired t-test p of the seeds' mean "
            "differences, which vary with the split, its held-out users and the fit. Over "
            "pairs: the same over the (seed, held-out user) pairs of every seed, paired per "
            "user (a user held out by two seeds is two pairs; the pairs' mean is the difference "
            "when every seed has as many users). It holds these five fits fixed: it asks "
            "whether these fitted models would rank other users like these better, and says "
            "nothing of another split or fit. Pairs won and lost: the rest tie. p is not "
            "adjusted.\n\n" + "\n".join(lines))  # fmt: skip


def per_user(results: pd.DataFrame) -> dict[Row, pd.Series]:
    """Each row's per-user NDCG@K indexed by (seed, the user's place among that seed's
    held-out users), so two rows subtract user by user; ``ValueError`` if a row holds another
    number of values than it has users."""
    values = {}
    for key, rows in results.groupby(["model", "route", "revealed"], sort=False):
        parts = []
        for seed, users, row in zip(rows["seed"], rows["users"], rows[PER_USER], strict=True):
            if len(row) != users:
                raise ValueError(f"{key}, seed {seed}: {len(row)} per-user values for "
                                 f"{users} users")  # fmt: skip
            index = pd.MultiIndex.from_product([[seed], range(users)], names=["seed", "user"])
            parts.append(pd.Series(row, index=index, dtype=float))
        values[key] = pd.concat(parts).sort_index()
    return values


def _row_name(key: Row) -> str:
    """``two_tower demographics, 0 revealed``; the popular list by its name alone."""
    model, route, r = key
    return f"{model if route == model else f'{model} {route}'}, {r} revealed"


def _half_width(differences: pd.Series) -> str:
    half_width = confidence_interval(differences.to_numpy())
    return "n/a" if np.isnan(half_width) else f"{half_width:.4f}"


def _p(values: pd.Series, base: pd.Series) -> str:
    """Paired t-test p of two rows' values, matched by index (``n/a`` for one value)."""
    values, base = values.align(base, join="inner")
    if len(values) < 2:
        return "n/a"
    p = paired_p_value(values.to_numpy(), base.to_numpy(), "ttest")
    if np.isnan(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def chosen_note(choices: list[dict]) -> str:
    """A sentence on what was chosen for cold start (``choices``): each model's values of each
    setting (and of each per-count value, ``PER_COUNT``), seed by seed."""
    if not choices:
        return ""
    seeds = ", ".join(str(s) for s in sorted({c["seed"] for c in choices}))
    parts = []
    for model, runs in itertools.groupby(sorted(choices, key=lambda c: (c["model"], c["seed"])),
                                         key=lambda c: c["model"]):  # fmt: skip
        runs = list(runs)
        values = [f"{key} ({', '.join(_value(run['chosen'][key]) for run in runs)})"
                  for key in runs[0].get("chosen", {})]  # fmt: skip
        values += [f"{name} at {r} (" + ", ".join(_value(chosen_values(run[key])[r])
                                                  for run in runs) + ")"
                   for key, name in PER_COUNT.items() if key in runs[0]
                   for r in chosen_values(runs[0][key])]  # fmt: skip
        parts.append(f"{model}: " + "; ".join(values))
    return (f" Chosen per seed ({seeds}) on users held out of that seed's training part, "
            f"never the test users (`protocol.choose`, `protocol.prior_weights`, "
            f"`protocol.first_ratings_regularization`): " + "; ".join(parts) + ".")  # fmt: skip


def _value(value) -> str:
    """A chosen setting as the note prints it: ``null``, a number by ``:g``, else as is."""
    if value is None:
        return "null"
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def figure(results: pd.DataFrame):
    """NDCG@K against ratings revealed: a line per model and route, CI bars over seeds."""
    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    table = summary_table(results)
    counts = sorted(results["revealed"].unique())
    fig, axis = plt.subplots(figsize=(8, 4))
    fold_ins = list(dict.fromkeys(table.loc[~table["route"].isin(["popular", "demographics"]),
                                            "model"]))  # fmt: skip
    colours = dict(zip(fold_ins, itertools.cycle(FOLD_IN_COLOURS), strict=False))
    colours |= {"popular": "grey", "demographics": "tab:purple"}  # by route
    for (model, route), rows in table.groupby(["model", "route"], sort=False):
        x, y, err = rows["revealed"], rows["mean"], rows["half_width"].fillna(0)
        colour = colours.get(route, colours.get(model))  # a model's routes share one
        if len(rows) == 1 or route in ("popular", "demographics") and len(set(y.round(9))) == 1:
            axis.axhline(y.iloc[0], linestyle="--", linewidth=1, color=colour,
                         label=f"{model} ({route})")  # fmt: skip
            continue
        style = {PRIOR: ("s", ":"), LATER: ("^", "--")}.get(route, ("o", "-"))
        axis.errorbar(x, y, yerr=err, marker=style[0], capsize=3, color=colour,
                      linestyle=style[1], label=f"{model} ({route})")  # fmt: skip
    axis.set_xticks(counts)
    axis.set_xlabel("ratings revealed per unseen user")
    axis.set_ylabel(f"test NDCG@{K}")
    axis.set_title("Cold start: users never seen in training")
    axis.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def kept_rows(path: Path, seeds: list[int], revealed: list[int]) -> pd.DataFrame:
    """The rows of ``path`` (a ``cold_start.json``) for ``--update``, checked before any
    training to be of ``seeds`` and the ``revealed`` counts (which choose the held-out users the
    rows pair), with per-user values (``ConfigError`` otherwise)."""
    try:
        kept = pd.DataFrame(json.loads(path.read_text())["rows"])
        old = sorted(kept["seed"].unique().tolist())
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"--update needs the table to update, {path}, which cannot be read "
                          f"({error}): run without --update") from error  # fmt: skip
    if old != sorted(seeds):
        raise ConfigError(f"--update: {path} holds seeds {old}, not this run's {sorted(seeds)}: "
                          f"run without --update to rebuild every model's rows")  # fmt: skip
    counts = sorted(kept["revealed"].unique().tolist())
    if counts != sorted(revealed):
        raise ConfigError(f"--update: {path} holds the revealed counts {counts}, not this run's "
                          f"{sorted(revealed)}: run without --update to rebuild every model's "
                          f"rows")  # fmt: skip
    if PER_USER not in kept or kept[PER_USER].isna().any():
        raise ConfigError(f"--update: {path} has rows without per-user values (written before "
                          f"they were recorded), which the table's tests pair: run without "
                          f"--update to rebuild every model's rows")  # fmt: skip
    return kept


def check_splits(kept: pd.DataFrame, fingerprints: dict[int, str], path: Path) -> None:
    """``ConfigError`` unless ``kept`` (the rows of ``path``) were built on the splits of
    ``fingerprints`` (``{seed: split fingerprint}``)."""
    if kept.groupby("seed")["fingerprint"].first().to_dict() != fingerprints:
        raise ConfigError(f"--update: {path} was built on other splits than this run's (other "
                          f"data or split settings): run without --update to rebuild every "
                          f"model's rows")  # fmt: skip


def without_threads(model: dict) -> dict:
    """A model's settings less ALS's ``num_threads``: the result does not depend on them (a
    ``cold_start.json`` written before they were left out still records them)."""
    return {key: value for key, value in model.items() if key != "num_threads"}


def check_settings(path: Path, models: list[str], overrides: list[str]) -> dict[str, dict]:
    """The settings ``path`` (a ``cold_start.json``) records for ``models`` (less ALS's
    threads), the models whose rows ``--update`` keeps, checked to be what this run's config
    gives them (``row_settings``):
    ``ConfigError`` naming the models and the first settings that differ otherwise (their YAML,
    the protocol's grids or the overrides changed since), or a model no longer configured."""
    if not models:
        return {}
    recorded = json.loads(path.read_text()).get("settings")
    if not isinstance(recorded, dict) or not set(models) <= set(recorded):
        raise ConfigError(f"--update: {path} records no settings for the rows it would keep "
                          f"(written before they were recorded): run without --update to "
                          f"rebuild every model's rows")  # fmt: skip
    gone = [name for name in models if name != FIRST_RATINGS and name not in model_names()]
    if gone:
        raise ConfigError(f"--update: {path} keeps rows of {', '.join(gone)}, no longer in "
                          f"conf/model: run without --update to rebuild the table")  # fmt: skip
    recorded = {name: recorded[name] | ({"model": without_threads(recorded[name]["model"])}
                                        if "model" in recorded[name] else {})
                for name in models}  # fmt: skip
    changed = {name: differences(recorded[name], row_settings(name, overrides))
               for name in models}  # fmt: skip
    changed = {name: keys for name, keys in changed.items() if keys}
    if changed:
        said = "; ".join(f"{name} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                         for name, keys in changed.items())  # fmt: skip
        raise ConfigError(f"--update: the kept rows of {said} were made with other settings "
                          f"than this run gives: add {' '.join(changed)} to --models, or run "
                          f"without --update")  # fmt: skip
    return {name: recorded[name] for name in models}


def differences(old, new, prefix: str = "") -> list[str]:
    """Where two nested settings differ: ``"key: old -> new"`` for each dotted key, a key on
    one side only shown as ``(none)`` on the other."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [f"{prefix.rstrip('.') or 'settings'}: {old} -> {new}"]
    keys = []
    for name in dict.fromkeys([*old, *new]):
        keys += differences(old.get(name, "(none)"), new.get(name, "(none)"), f"{prefix}{name}.")
    return keys


def updated(results: pd.DataFrame, kept: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``kept`` (the rows of ``path``) with those of the models in ``results`` replaced by
    ``results``' (in place; new models last). ``ConfigError`` unless they share the splits."""
    check_splits(kept, results.groupby("seed")["fingerprint"].first().to_dict(), path)
    models = list(dict.fromkeys([*kept["model"], *results["model"]]))
    new = set(results["model"])
    frames = [results[results["model"] == m] if m in new else kept[kept["model"] == m]
              for m in models]  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def evaluated(runs: list[tuple[str, int]], overrides: list[str], ks: list[int],
              jobs: int) -> Iterator[tuple[pd.DataFrame, dict]]:  # fmt: skip
    """``evaluate_seed`` of each ``(model, seed)`` of ``runs``, in order, ``jobs`` at a time
    (each in a spawned process: a forked one would inherit torch's state)."""
    if jobs == 1:
        yield from (evaluate_seed(name, seed, overrides, ks) for name, seed in runs)
        return
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(evaluate_seed, *zip(*runs, strict=True),
                            itertools.repeat(overrides), itertools.repeat(ks))  # fmt: skip


def kept_choices(path: Path) -> list[dict]:
    """The settings chosen for cold start that ``path`` (a ``cold_start.json``, which
    ``kept_rows`` has read) records, for ``--update``; ``ConfigError`` if they are malformed."""
    choices = json.loads(path.read_text()).get("choices", [])
    if not all(isinstance(c, dict) and {"model", "seed", "chosen"} <= set(c)
               and all(isinstance(c[key], dict) and all(
                   isinstance(v, dict) and {"revealed", "value"} <= set(v)
                   for v in c[key].get("chosen", [])) for key in PER_COUNT if key in c)
               for c in choices):  # fmt: skip
        raise ConfigError(f"--update: the choices recorded in {path} are malformed: run without "
                          f"--update to rebuild every model's rows")  # fmt: skip
    return choices


def write(results: pd.DataFrame, choices: list[dict], settings: dict[str, dict], out: Path,
          readme: Path | None) -> None:  # fmt: skip
    """``cold_start.md``, ``cold_start.json`` (rows, the settings chosen for cold start, and
    each model's ``row_settings``),
    ``figures/cold_start.png|pdf`` into ``out``, and the README's generated ``cold-start``
    section when ``readme`` is given."""
    text = markdown(results, choices)
    readme_text = None if readme is None else replace_section(readme.read_text(), "cold-start",
                                                              text)  # fmt: skip
    fig = figure(results)
    for suffix, options in ((".png", {"dpi": 200}), (".pdf", {"metadata": {"CreationDate": None}})):
        with atomic_path(out / "figures" / f"cold_start{suffix}") as tmp:
            fig.savefig(tmp, format=suffix[1:], bbox_inches="tight", **options)
    plt.close(fig)
    atomic_write_text(out / "cold_start.md", "# Cold start\n\n" + text
                      + "\n\n![cold start](figures/cold_start.png)\n")  # fmt: skip
    rows = results.astype(object).where(results.notna(), None)  # NaN: null, valid JSON
    record = {"protocol": "cold_users", "rows": rows.to_dict(orient="records"),
              "choices": choices, "settings": settings}  # fmt: skip
    text = _one_line_lists(json.dumps(record, indent=1, allow_nan=False))
    atomic_write_text(out / "cold_start.json", text + "\n")
    if readme_text is not None:
        atomic_write_text(readme, readme_text)


def _one_line_lists(text: str) -> str:
    """JSON text with every list of numbers on one line (a row's per-user values: 94 lines
    each otherwise)."""
    return re.sub(r"\[\n\s*([-+0-9.eE,\s]*?)\s*\]",
                  lambda match: "[" + " ".join(match.group(1).split()) + "]", text)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m recsys.cold_start", description=__doc__)
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        help=f"models of conf/model/, or {FIRST_RATINGS}, this tool's own "
                             f"baseline (default: {' '.join(MODELS)})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--data-dir", default=None,
                        help="the data folder (default: data.dir: $RECSYS_DATA_DIR, else "
                             "~/.cache/recsys/data)")
    parser.add_argument("--ks", type=positive_int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--readme", type=Path, default=None,
                        help="also write the table into this README's cold-start section")
    parser.add_argument("--update", action="store_true",
                        help="train only --models; keep the other models' rows and chosen "
                             "settings of the existing cold_start.json in --out (same seeds "
                             "and splits only)")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="(model, seed) runs at a time, each in its own process (a torch "
                             "model trains on one CPU thread; ALS and EASE use every core, and "
                             "each process checks the free memory on its own)")
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides for every run, e.g. model.trainer.epochs=5 "
                             "(a model.* one reaches the models that have the key)")
    args = parser.parse_args(argv)
    plt.switch_backend("Agg")
    overrides = ["tracking.enabled=false", *args.overrides]
    if args.data_dir is not None:
        overrides.insert(0, f"data.dir={args.data_dir}")
    try:
        check_arguments(args)
        if K not in args.ks:
            raise ConfigError(f"--ks must include {K}, the table's cut-off, got {args.ks}")
        if args.readme is not None:
            read_readme(args.readme, "cold-start")  # fails before training
        for name, given in (("--models", args.models), ("--seeds", args.seeds)):
            if len(set(given)) < len(given):
                raise ConfigError(f"{name} names {given}, with repeats: name each once")
        check_models(args.models)
        table = args.out / "cold_start.json"
        protocol = ["protocol=cold_users", *(o for o in overrides if not o.startswith("model."))]
        check_overrides(protocol)
        protocol_cfg = compose_config(protocol).protocol
        revealed = check_revealed(protocol_cfg.get("revealed"))
        check_sizes(protocol, args.seeds[0], args.ks, max(revealed))
        check_grid("prior_weights", protocol_cfg.get("prior_weights", []))
        check_regularization(protocol_cfg.get("first_ratings_regularization", []))
        # fails before training
        kept = kept_rows(table, args.seeds, revealed) if args.update else None
        if kept is not None:  # the splits too (loading them takes seconds, training hours)
            check_splits(kept, {seed: load_split(compose_config([*protocol, f"seed={seed}"]))
                                .split.fingerprint for seed in args.seeds}, table)  # fmt: skip
        kept_models = [] if kept is None else [m for m in dict.fromkeys(kept["model"])
                                               if m not in args.models]  # fmt: skip
        kept_choice = [] if kept is None else [c for c in kept_choices(table)
                                               if c["model"] not in args.models]  # fmt: skip
        settings = check_settings(table, kept_models, overrides)
        check_model_overrides(overrides, [*args.models, *kept_models])
        settings |= {name: row_settings(name, overrides) for name in args.models}
        runs = [(name, seed) for name in args.models for seed in args.seeds]
        frames, choices = [], []
        for (name, seed), (frame, choice) in zip(runs, evaluated(runs, overrides, args.ks,
                                                                 args.jobs), strict=True):
            print(frame[["model", "route", "revealed", "seed", f"ndcg@{K}"]]
                  .to_string(index=False, header=not frames), flush=True)  # fmt: skip
            if choice:
                per_count = {PER_COUNT[key]: chosen_values(choice[key]) for key in PER_COUNT
                             if key in choice}  # fmt: skip
                print(f"{name}, seed {seed}: chose {choice.get('chosen', {}) | per_count} on "
                      f"held-out training users", flush=True)  # fmt: skip
                choices.append(choice)
            frames.append(frame)
        results = pd.concat(frames, ignore_index=True)
        if kept is not None:
            results = updated(results, kept, table)
            choices = kept_choice + choices
        write(results, choices, settings, args.out, args.readme)
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out / 'cold_start.md'}, cold_start.json and figures/cold_start.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
