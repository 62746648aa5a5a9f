"""The one small interface every model implements, and the shared top-K ranking."""

from __future__ import annotations

import json
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError, RecsysError


class Recommender(ABC):
    """Fit on a user-item matrix, score items for batches of users, rank the top K.

    Subclasses implement ``fit`` and ``score``; models with latent factors also return them
    from ``user_embeddings`` / ``item_embeddings`` so that their scores are
    ``user_embeddings @ item_embeddings.T`` (what the FAISS export relies on).
    """

    n_users: int = 0
    n_items: int = 0

    @abstractmethod
    def fit(self, train: sp.csr_matrix) -> Self:
        """Learn from the binary ``(n_users, n_items)`` training matrix; return ``self``."""

    def fit_validated(self, train: sp.csr_matrix, validate=None, on_epoch=None) -> Self:
        """Fit; iterative models early-stop on ``validate(model) -> float`` and report each
        epoch to ``on_epoch(epoch, record)``. Closed-form models just ``fit(train)``."""
        return self.fit(train)

    def training_summary(self) -> dict[str, float]:
        """Numbers about the fit worth logging (epochs for iterative models)."""
        return {}

    def refit_overrides(self) -> dict:
        """Config overrides that retrain what this fit selected on more data without a
        validation part (an iterative model: its best epoch count); none for the others."""
        return {}

    def memory_needed(self, n_users: int, n_items: int, nnz: int) -> dict[str, int]:
        """Bytes of this model's largest allocations when fitted on ``nnz`` interactions of
        ``n_users x n_items``, by what they hold (``recsys.memory`` checks them before a fit);
        models whose state is a few vectors per user and item need not say."""
        return {}

    @abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """``(len(users), n_items)`` float32 scores, higher is better, for user indices."""

    @property
    def user_embeddings(self) -> np.ndarray | None:
        """``(n_users, d)`` user vectors, or ``None`` for models without them."""
        return None

    @property
    def item_embeddings(self) -> np.ndarray | None:
        """``(n_items, d)`` item vectors, or ``None`` for models without them."""
        return None

    def recommend(
        self,
        users: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None = None,
        batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for each user, best first, never an excluded item.

        Parameters
        ----------
        users
            ``(B,)`` user indices.
        k
            Items per user.
        exclude
            ``(n_users, n_items)`` matrix whose non-zeros are never recommended (the users'
            training items); ``None`` excludes nothing.
        batch_size
            Users scored at once (bounds memory at ``batch_size * n_items`` floats).

        Returns
        -------
        items, scores
            ``(B, k)`` int64 item indices and float32 scores. Where fewer than ``k`` items are
            left after exclusion, the remaining slots hold item ``-1`` and score ``-inf``.
        """
        users = np.asarray(users, dtype=np.int64)
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        k = min(k, self.n_items)
        exclude = None if exclude is None else sp.csr_matrix(exclude)
        items = np.empty((len(users), k), dtype=np.int64)
        scores = np.empty((len(users), k), dtype=np.float32)
        for start in range(0, len(users), batch_size):
            batch = users[start : start + batch_size]
            excluded = None if exclude is None else exclude[batch]
            rows = slice(start, start + len(batch))
            items[rows], scores[rows] = self._rank_batch(batch, k, excluded)
        return items, scores

    def _rank_batch(self, users: np.ndarray, k: int, excluded: sp.csr_matrix | None):
        """``(B, k)`` items and scores of one batch: score, mask excluded items, ``top_k``.

        Torch models override this to rank on their own device.
        """
        scores = self._scores_to_mask(users)  # (B, n_items), ours to write into
        if excluded is not None:
            mask_excluded(scores, excluded)
        return top_k(scores, k)


    def _scores_to_mask(self, users: np.ndarray) -> np.ndarray:
        """``score(users)`` as a float32 array that masking may overwrite: a copy, since a
        model's ``score`` may return its own state (a cached row, a broadcast view)."""
        return np.array(self.score(users), dtype=np.float32)


class FactorRecommender(Recommender):
    """A model whose scores are inner products of user and item vectors.

    Subclasses set ``_user_vectors`` ``(n_users, d)`` and ``_item_vectors`` ``(n_items, d)``
    (float32) in ``fit``; scoring and the embedding properties come from here.
    """

    _user_vectors: np.ndarray | None = None
    _item_vectors: np.ndarray | None = None

    def score(self, users: np.ndarray) -> np.ndarray:
        return self._user_vectors[users] @ self._item_vectors.T  # (B, d) @ (d, n_items)

    def _scores_to_mask(self, users: np.ndarray) -> np.ndarray:
        # a new array from the matmul: no copy needed (a subclass whose ``score`` returns
        # stored arrays must override this back to a copy)
        scores = self.score(users)
        return scores if scores.dtype == np.float32 else scores.astype(np.float32)

    @property
    def user_embeddings(self) -> np.ndarray | None:
        return self._user_vectors

    @property
    def item_embeddings(self) -> np.ndarray | None:
        return self._item_vectors


@dataclass(frozen=True)
class NewUserParts:
    """What a fitted model needs to score a user it never saw, as plain data, so that the export
    can carry it and a server can rebuild it without the training code's state.

    ``kind`` names the rebuilder (``two_tower.user_tower``: ``DemographicsTower``;
    ``multvae.encoder``: ``VAEFoldIn``); ``spec`` holds its JSON-able settings (sizes,
    feature vocabularies), ``weights`` its arrays (a module's ``state_dict``). A model offers
    them through a ``new_user_parts()`` method.
    """

    kind: str
    spec: dict
    weights: dict[str, np.ndarray]

    def write(self, spec_path: Path, weights_path: Path) -> None:
        """``spec_path``: ``{"kind": ..., "spec": ...}`` as JSON; ``weights_path``: an ``.npz``."""
        spec_path.write_text(json.dumps({"kind": self.kind, "spec": self.spec}, indent=1) + "\n")
        with open(weights_path, "wb") as handle:  # np.savez would append ".npz" to a bare name
            np.savez(handle, **self.weights)

    @classmethod
    def read(cls, spec_path: Path, weights_path: Path) -> NewUserParts:
        """The parts ``write`` wrote (``RecsysError`` naming the file if either is unreadable)."""
        try:
            header = json.loads(Path(spec_path).read_text())
            with np.load(weights_path, allow_pickle=False) as arrays:
                weights = {name: arrays[name] for name in arrays.files}
            return cls(str(header["kind"]), dict(header["spec"]), weights)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise RecsysError(f"the new-user parts in {spec_path} and {weights_path} cannot be "
                              f"read ({type(error).__name__}: {error}): damaged; train the "
                              f"run again, or export it again") from None


def binary_rows(matrix: sp.spmatrix) -> sp.csr_matrix:
    """``matrix`` as a float32 CSR matrix with every stored positive value set to 1 (an entry
    stored twice is summed first, so it is 1 too)."""
    rows = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    rows.sum_duplicates()
    rows.data = (rows.data > 0).astype(np.float32)
    rows.eliminate_zeros()
    return rows


def mask_excluded(scores: np.ndarray, excluded: sp.csr_matrix) -> None:
    """Set ``scores[r, i] = -inf`` in place wherever ``excluded[r, i]`` is non-zero."""
    rows = np.repeat(np.arange(excluded.shape[0]), np.diff(excluded.indptr))
    scores[rows, excluded.indices] = -np.inf


TOP_K_CHUNK = 64  # items per chunk of a row when ``top_k`` narrows the candidates


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest scores per row, best first.

    Ties are broken by the lower item index, so the order depends only on the row's scores.
    ``-inf`` scores come back as index ``-1``.

    The ``k + 1`` largest values come from ``_largest``; where the ``(k + 1)``-th equals the
    ``k``-th, which ``k`` items to keep is a tie that ``torch.topk`` settles as it likes, and
    that row is ranked again by ``_chosen_exact``. No other full pass over the scores is made.
    """
    n_items = scores.shape[1]
    k = min(k, n_items)
    probe = min(k + 1, n_items)
    values, candidates = _largest(scores, probe)  # (B, k + 1), best first
    ambiguous = np.flatnonzero(values[:, k - 1] == values[:, k]) if probe > k else []
    values, candidates = values[:, :k], candidates[:, :k]
    if len(ambiguous):
        candidates[ambiguous], values[ambiguous] = _chosen_exact(scores[ambiguous], k)
    order = np.lexsort((candidates, -values), axis=1)  # score desc, then index
    items = np.take_along_axis(candidates, order, axis=1).astype(np.int64)
    values = np.take_along_axis(values, order, axis=1)
    items[np.isneginf(values)] = -1
    return items, values


def _largest(scores: np.ndarray, probe: int) -> tuple[np.ndarray, np.ndarray]:
    """``(B, probe)`` values, largest first, and their columns: the row's ``probe`` largest
    values (which of several tied items is returned is ``torch.topk``'s choice).

    Each row is cut into chunks of ``TOP_K_CHUNK`` items; the ``probe`` chunks with the largest
    maxima hold the ``probe`` largest values (an item outside them is at most the smallest of
    those ``probe`` maxima, each a different item), so ``torch.topk`` runs over those chunks
    and the last, short one: one pass to take the maxima instead of a selection over the whole
    row, which halves the cost of ranking an ML-20M-sized catalogue
    (``experiments/benchmark_ranking.py``). One torch thread: on 2 cores, a second one spent
    more time contending with BLAS's threads, still spinning after the matmul, than it saved.
    """
    import torch

    rows, n_items = scores.shape
    chunks = n_items // TOP_K_CHUNK
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        table = torch.from_numpy(scores)
        if chunks <= probe:  # a small catalogue: select over whole rows
            values, columns = torch.topk(table, probe, dim=1)
            return values.numpy(), columns.numpy()
        whole = table[:, : chunks * TOP_K_CHUNK].reshape(rows, chunks, TOP_K_CHUNK)
        best = torch.topk(whole.amax(dim=2), probe, dim=1, sorted=False).indices  # (B, probe)
        chosen = torch.gather(whole, 1, best[:, :, None].expand(-1, -1, TOP_K_CHUNK))
        candidates = torch.cat([chosen.reshape(rows, -1), table[:, chunks * TOP_K_CHUNK :]], 1)
        values, position = torch.topk(candidates, probe, dim=1)  # (B, probe), best first
        # a position in the chosen chunks -> its chunk's first column + the offset; past them,
        # the short last chunk's columns
        in_chunk = torch.gather(best, 1, (position // TOP_K_CHUNK).clamp(max=probe - 1))
        columns = torch.where(position < probe * TOP_K_CHUNK,
                              in_chunk * TOP_K_CHUNK + position % TOP_K_CHUNK,
                              chunks * TOP_K_CHUNK + position - probe * TOP_K_CHUNK)  # fmt: skip
        return values.numpy(), columns.numpy()
    finally:
        torch.set_num_threads(threads)


def _chosen_exact(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(B, k)`` indices (in item order) and values of each row's top ``k``, ties at the k-th
    value going to the lower indices: the definition, in full passes over the rows."""
    n_items = scores.shape[1]
    kth = np.partition(scores, n_items - k, axis=1)[:, n_items - k]  # (B,) k-th largest score
    above = scores > kth[:, None]  # (B, n_items)
    tied = scores == kth[:, None]
    needed = k - above.sum(axis=1)  # (B,) how many tied items complete the top k
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= needed[:, None]))  # exactly k per row
    candidates = np.nonzero(chosen)[1].reshape(len(scores), k)  # (B, k) by item index
    return candidates, np.take_along_axis(scores, candidates, axis=1)


def check_positive(name: str, value: float, *, integer: bool = False, allow_zero: bool = False):
    """Return ``value`` if it is a positive number (an int if ``integer``), else ``ConfigError``."""
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    bad_type = not is_number or (integer and int(value) != value)
    if bad_type or (value < 0 if allow_zero else value <= 0):
        kind = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {kind} {bound}, got {value!r}")
    return int(value) if integer else float(value)


def check_bool(name: str, value: bool) -> bool:
    """Return ``value`` if it is a boolean, else ``ConfigError`` (``"false"`` is not one)."""
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def check_probability(name: str, value: float) -> float:
    """Return ``value`` if it lies in ``[0, 1)``, else ``ConfigError``."""
    if not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else ``ConfigError``."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value
