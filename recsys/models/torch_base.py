"""The training loop shared by the PyTorch models: it owns the optimisation step.

A torch model supplies three things: its ``nn.Module`` (``build_module``), the loss of one batch
of training interactions together with that batch's penalty (``batch_loss``), and the user and
item vectors whose inner products are its scores (``compute_embeddings``). A model that reads a
user's whole training row (an autoencoder) sets ``batch_unit = "users"`` and gets batches of
users instead. Everything else is here, once: device placement, seeding, Adam, shuffled
mini-batches, the step (``zero_grad`` -> ``backward`` -> ``step``), validation, early stopping
with the best epoch's weights restored, and ranking on the model's device.

How to train (epochs, batch size, learning rate, patience, device, ...) is a ``TrainerConfig``,
built from the ``trainer`` config group (``conf/trainer/``). Seeded and deterministic on CPU:
all randomness comes from the model's ``seed`` inside a forked RNG, so nothing global changes.
The validation metric arrives as a callback from the entry point: models do not import metrics.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import logging
import math
import os
import platform
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from tqdm.auto import tqdm

from recsys.errors import ConfigError
from recsys.memory import FLOAT32, INT64
from recsys.models.base import (
    FactorRecommender,
    Recommender,
    check_bool,
    check_positive,
    check_probability,
)

log = logging.getLogger(__name__)

Validate = Callable[[Recommender], float]
OnEpoch = Callable[[int, dict[str, float]], None]
DEVICES = ("auto", "cpu", "cuda")


# glibc's mallopt parameters, and the size below which freed blocks stay with the process
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEPT_BLOCK_BYTES = 64 * 2**20


@functools.cache
def keep_freed_blocks() -> bool:
    """Have glibc keep freed blocks under ``KEPT_BLOCK_BYTES`` for reuse (once per process).

    glibc serves a block above its mmap threshold (at most 32 MiB by default) from fresh pages
    and unmaps it when freed, so a training step that allocates such a tensor page-faults it in
    again at every step: BPR's ``(B, n, d)`` gather of negatives is exactly 32 MiB at its
    defaults, and its epoch spent a third of its time in the kernel. Raising the threshold (and
    the trim threshold above it) reuses the memory instead; it changes no number, only time
    (``experiments/benchmark_models.py``). Not glibc, or ``MALLOC_MMAP_THRESHOLD_`` already set
    by the user: nothing is changed. Returns whether the setting was applied."""
    if platform.libc_ver()[0] != "glibc" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    libc = ctypes.CDLL(None)
    applied = bool(libc.mallopt(M_MMAP_THRESHOLD, KEPT_BLOCK_BYTES)
                   and libc.mallopt(M_TRIM_THRESHOLD, 2 * KEPT_BLOCK_BYTES))  # fmt: skip
    log.debug("glibc keeps freed blocks under %d MiB for reuse: %s", KEPT_BLOCK_BYTES >> 20,
              applied)  # fmt: skip
    return applied


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a ``ConfigError``."""
    if device not in DEVICES:
        raise ConfigError(f"model.trainer.device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("model.trainer.device=cuda but no CUDA GPU is available: use auto or "
                          "cpu")  # fmt: skip
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


@dataclass(frozen=True)
class TrainerConfig:
    """How a torch model is trained. No defaults here: ``conf/trainer/default.yaml`` holds them,
    and each torch model's YAML overrides what its validation study chose.

    Parameters
    ----------
    epochs
        Maximum number of epochs.
    batch_size
        Training interactions per optimisation step (users, for a model whose
        ``batch_unit`` is ``"users"``).
    lr
        Adam's learning rate.
    patience
        Stop after this many validations without improvement (0: never stop early).
    min_epochs
        Never stop before this epoch (validation curves of graph models dip before they rise).
    eval_every
        Validate every this many epochs.
    ema
        Decay of an exponential moving average of the weights, updated after every step
        (``w_avg <- ema * w_avg + (1 - ema) * w``); validation, early stopping, refit and
        scoring then use the averaged weights. 0: off. Averaging smooths the epoch-to-epoch
        oscillation of a model trained at a high learning rate, whose best validated epoch is
        otherwise partly luck, and which a refit for that many epochs does not repeat.
    device
        ``auto``, ``cpu`` or ``cuda``.
    progress
        Show a progress bar (on a terminal only).
    deterministic
        On CPU, train on one thread so that the same seed gives bit-identical weights
        (multithreaded reductions differ in the last bits from run to run; ~30 % slower).
    """

    epochs: int
    batch_size: int
    lr: float
    patience: int
    min_epochs: int
    eval_every: int
    ema: float
    device: str
    progress: bool
    deterministic: bool

    def __post_init__(self):
        def name(key: str) -> str:
            return f"model.trainer.{key}"

        checked = {
            "epochs": check_positive(name("epochs"), self.epochs, integer=True),
            "batch_size": check_positive(name("batch_size"), self.batch_size, integer=True),
            "lr": check_positive(name("lr"), self.lr),
            "patience": check_positive(name("patience"), self.patience, integer=True,
                                       allow_zero=True),  # fmt: skip
            "min_epochs": check_positive(name("min_epochs"), self.min_epochs, integer=True,
                                         allow_zero=True),  # fmt: skip
            "eval_every": check_positive(name("eval_every"), self.eval_every, integer=True),
            "ema": check_probability(name("ema"), self.ema),
            "progress": check_bool(name("progress"), self.progress),
            "deterministic": check_bool(name("deterministic"), self.deterministic),
        }
        for key, value in checked.items():  # normalised types (YAML's 1e-3 may be a string)
            object.__setattr__(self, key, value)
        resolve_device(self.device)  # validate now, resolve at fit


class BatchLoss(NamedTuple):
    """What a torch model returns for one batch: its mean loss and its penalty (scalars)."""

    loss: torch.Tensor
    penalty: torch.Tensor


class TorchRecommender(FactorRecommender):
    """Adam, mini-batches of training interactions, early stopping; see the module docstring.

    Parameters
    ----------
    trainer
        How to train (``conf/trainer/``).
    seed
        Seeds initialisation, sampling and dropout.
    """

    def __init__(self, trainer: TrainerConfig, seed: int):
        if not isinstance(trainer, TrainerConfig):
            raise ConfigError(f"model.trainer must be a trainer config, got {trainer!r}")
        self.trainer = trainer
        self.seed = int(seed)
        self.module: nn.Module | None = None
        self.device = torch.device("cpu")
        self.best_epoch = 0
        self.epochs_run = 0
        self.steps = 0  # optimisation steps of the current fit (a schedule may read it)
        self._user_tensor: torch.Tensor | None = None
        self._item_tensor: torch.Tensor | None = None
        self._average: nn.Module | None = None  # the moving average of the weights, if any

    # -- what a subclass provides -------------------------------------------------------------
    #: What an epoch shuffles and ``batch_size`` counts: ``"interactions"`` (``batch_loss`` gets
    #: ``users[b], items[b]``) or ``"users"``: the users with a training interaction, each once an
    #: epoch, and ``items`` is ``None`` (the model reads their training rows itself).
    batch_unit: ClassVar[str] = "interactions"

    @abstractmethod
    def build_module(self, train: sp.csr_matrix) -> nn.Module:
        """The trainable module for this training matrix (parameters initialised)."""

    @abstractmethod
    def batch_loss(self, users: torch.Tensor, items: torch.Tensor | None,
                   generator: torch.Generator) -> BatchLoss:  # fmt: skip
        """Loss and penalty of one batch of training interactions ``(users[b], items[b])``,
        both ``(B,)`` on the model's device (``items`` is ``None`` where ``batch_unit`` is
        ``"users"``); ``generator`` draws negatives and dropout. ``self.steps`` is the number
        of steps taken before this one (for schedules such as KL annealing)."""

    @abstractmethod
    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n_users, d)`` and ``(n_items, d)`` vectors whose inner products are the scores."""

    def parameter_count(self, n_users: int, n_items: int) -> int:
        """Trainable parameters of the module for this catalogue (for ``memory_needed``)."""
        return 0

    def activation_memory(self, n_users: int, n_items: int, nnz: int) -> dict[str, int]:
        """Bytes of a step's large intermediate tensors beyond the parameters (a graph, a batch
        of dense rows), by what they hold."""
        return {}

    def memory_needed(self, n_users: int, n_items: int, nnz: int) -> dict[str, int]:
        copies = 4 + (self.trainer.ema > 0)
        return {"training examples (int64 pairs)": 2 * nnz * INT64,
                f"parameters x{copies} (weights, gradients, Adam's two moments"
                f"{', moving average' if copies > 4 else ''})":
                copies * FLOAT32 * self.parameter_count(n_users, n_items)} \
            | self.activation_memory(n_users, n_items, nnz)  # fmt: skip

    # -- the shared loop -----------------------------------------------------------------------
    def fit(self, train: sp.csr_matrix, validate: Validate | None = None,
            on_epoch: OnEpoch | None = None) -> TorchRecommender:  # fmt: skip
        """Train for up to ``trainer.epochs``; with ``validate``, keep the best validated
        weights and stop early."""
        self.n_users, self.n_items = train.shape
        self.device = resolve_device(self.trainer.device)
        keep_freed_blocks()
        forked = [self.device] if self.device.type == "cuda" else []
        threads = torch.get_num_threads()
        if self.trainer.deterministic and self.device.type == "cpu":
            torch.set_num_threads(1)  # parallel CPU reductions vary in the last bits otherwise
        try:
            with torch.random.fork_rng(devices=forked):
                torch.manual_seed(self.seed)
                generator = torch.Generator().manual_seed(self.seed)
                self._train_users, self._train_items = self._training_examples(train)
                self.module = self.build_module(train).to(self.device)
                self._average = self._moving_average()
                optimizer = torch.optim.Adam(self.module.parameters(), lr=self.trainer.lr)
                self.steps = 0
                self._train(optimizer, generator, validate, on_epoch)
        finally:
            torch.set_num_threads(threads)
        return self

    def _training_examples(self, train: sp.csr_matrix):
        """What an epoch shuffles: the ``(E,)`` users and items of the training interactions,
        or (``batch_unit="users"``) the ``(U,)`` users with a training interaction and ``None``."""
        if self.batch_unit == "users":
            users = np.flatnonzero(np.diff(train.indptr)).astype(np.int64)
            return torch.from_numpy(users).to(self.device), None
        coo = train.tocoo()
        return (torch.from_numpy(coo.row.astype(np.int64)).to(self.device),
                torch.from_numpy(coo.col.astype(np.int64)).to(self.device))  # fmt: skip

    def fit_validated(self, train: sp.csr_matrix, validate: Validate | None = None,
                      on_epoch: OnEpoch | None = None) -> TorchRecommender:  # fmt: skip
        return self.fit(train, validate=validate, on_epoch=on_epoch)

    def training_summary(self) -> dict[str, float]:
        return {"train/best_epoch": self.best_epoch, "train/epochs_run": self.epochs_run}

    def refit_overrides(self) -> dict:
        return {"trainer": {"epochs": max(self.best_epoch, 1), "min_epochs": 0}}

    def _moving_average(self):
        if not self.trainer.ema:
            return None
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        return AveragedModel(self.module, multi_avg_fn=get_ema_multi_avg_fn(self.trainer.ema),
                             use_buffers=True)  # fmt: skip

    @contextlib.contextmanager
    def _evaluated_weights(self):
        """Within: ``self.module`` is the module that is validated and kept (the moving
        average where ``trainer.ema`` keeps one)."""
        if self._average is None:
            yield
            return
        live, self.module = self.module, self._average.module
        try:
            yield
        finally:
            self.module = live

    def _train(self, optimizer, generator, validate, on_epoch) -> None:
        settings = self.trainer
        best_value, best_state, waited = -math.inf, None, 0
        bar = tqdm(range(1, settings.epochs + 1), desc=type(self).__name__, leave=False,
                   disable=not settings.progress or None)  # fmt: skip
        for epoch in bar:
            start = time.perf_counter()
            record = self._train_epoch(optimizer, generator)  # ends in a device sync
            record["seconds"] = time.perf_counter() - start
            self.epochs_run = epoch
            if validate is not None and epoch % settings.eval_every == 0:
                self._cache_embeddings()
                record["val"] = value = float(validate(self))
                if value > best_value:
                    best_value, best_state, waited = value, self._state(), 0
                    self.best_epoch = epoch
                else:
                    waited += 1
            bar.set_postfix({k: f"{v:.4f}" for k, v in record.items()})
            if on_epoch is not None:
                on_epoch(epoch, record)
            if settings.patience and waited >= settings.patience and epoch >= settings.min_epochs:
                log.info("early stop at epoch %d, best epoch %d", epoch, self.best_epoch)
                break
        if best_state is None:
            self.best_epoch = self.epochs_run
            best_state = self._state()
        self.module.load_state_dict(best_state)
        self._average = None  # the kept weights are in the module now
        self._cache_embeddings()

    def _train_epoch(self, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator) -> dict[str, float]:  # fmt: skip
        """One pass over the training interactions (or users) in shuffled batches: the one place
        a step happens. Returns the epoch's mean loss (loss + penalty) and mean penalty."""
        self.module.train()
        n = len(self._train_users)
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss, penalty
        order = torch.randperm(n, generator=generator).to(self.device)
        for batch in order.split(self.trainer.batch_size):
            items = None if self._train_items is None else self._train_items[batch]
            loss, penalty = self.batch_loss(self._train_users[batch], items, generator)
            objective = loss + penalty
            optimizer.zero_grad()
            objective.backward()
            optimizer.step()
            self.steps += 1
            if self._average is not None:
                self._average.update_parameters(self.module)
            totals += torch.stack([objective.detach(), penalty.detach()]).double() * len(batch)
        mean = (totals / n).tolist()  # one device sync an epoch, not one a step
        return {"loss": mean[0], "penalty": mean[1]}

    def _state(self) -> dict[str, torch.Tensor]:
        """A copy of the weights that are validated and kept."""
        with self._evaluated_weights():
            return copy.deepcopy(self.module.state_dict())

    @torch.no_grad()
    def _cache_embeddings(self) -> None:
        with self._evaluated_weights():
            self.module.eval()
            users, items = self.compute_embeddings()
        self._user_tensor, self._item_tensor = users.float(), items.float()  # on the device
        self._user_vectors = self._item_vectors = None  # numpy copies, made when asked for

    # -- scoring and ranking on the model's device ---------------------------------------------
    @property
    def user_embeddings(self) -> np.ndarray | None:
        if self._user_vectors is None and self._user_tensor is not None:
            self._user_vectors = self._user_tensor.cpu().numpy()
        return self._user_vectors

    @property
    def item_embeddings(self) -> np.ndarray | None:
        if self._item_vectors is None and self._item_tensor is not None:
            self._item_vectors = self._item_tensor.cpu().numpy()
        return self._item_vectors

    @torch.no_grad()
    def _device_scores(self, users: np.ndarray) -> torch.Tensor:
        rows = torch.from_numpy(np.asarray(users, dtype=np.int64)).to(self.device)
        return self._user_tensor[rows] @ self._item_tensor.T  # (B, d) @ (d, n_items)

    def score(self, users: np.ndarray) -> np.ndarray:
        return self._device_scores(users).cpu().numpy()

    @torch.no_grad()
    def _rank_batch(self, users: np.ndarray, k: int, excluded: sp.csr_matrix | None):
        scores = self._device_scores(users)  # (B, n_items) on the device
        if excluded is not None:
            rows = np.repeat(np.arange(excluded.shape[0]), np.diff(excluded.indptr))
            columns = excluded.indices.astype(np.int64)
            scores[torch.from_numpy(rows).to(self.device),
                   torch.from_numpy(columns).to(self.device)] = -math.inf  # fmt: skip
        items, values = top_k_torch(scores, k)
        return items.cpu().numpy(), values.cpu().numpy()


def top_k_torch(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``recsys.models.base.top_k`` in torch, on the scores' device, with the same result.

    Ties are broken by the lower item index (``torch.topk`` alone leaves their order to the
    kernel), and ``-inf`` scores come back as index ``-1``.
    """
    n_rows, n_items = scores.shape
    k = min(k, n_items)
    kth = torch.topk(scores, k, dim=1).values[:, -1:]  # (B, 1) the k-th largest score
    above = scores > kth  # (B, n_items)
    tied = scores == kth
    needed = k - above.sum(dim=1, keepdim=True)  # (B, 1) tied items that complete the top k
    chosen = above | (tied & (torch.cumsum(tied, dim=1) <= needed))  # exactly k per row
    candidates = chosen.nonzero()[:, 1].reshape(n_rows, k)  # (B, k) in item order
    candidate_scores = torch.gather(scores, 1, candidates)
    order = torch.sort(candidate_scores, dim=1, descending=True, stable=True).indices
    items = torch.gather(candidates, 1, order)
    values = torch.gather(candidate_scores, 1, order)
    return items.masked_fill(torch.isneginf(values), -1), values


def embedding_l2(*vectors: torch.Tensor, examples: int) -> torch.Tensor:
    """Sum of squares of the embedding rows a batch touched, per example (divided by
    ``examples``, the batch size): the L2 penalty of BPR-style training."""
    return sum(v.square().sum() for v in vectors) / examples


def parameter_l2(parameters) -> torch.Tensor:
    """Sum of squares of every tensor in ``parameters`` (an L2 penalty added to the loss:
    Adam then adapts it per parameter, unlike AdamW's decoupled weight decay)."""
    return sum(p.square().sum() for p in parameters)
