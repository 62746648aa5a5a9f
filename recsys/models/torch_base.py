"""The training loop shared by the PyTorch models.

Seeded and deterministic on CPU (all randomness comes from the model's ``seed``, inside a forked
RNG, so nothing global changes); ``device=auto|cpu|cuda``; a progress bar with epoch, loss and
the validation metric; early stopping on that metric with the best epoch's weights restored.
The validation metric arrives as a callback from the entry point: models do not import metrics.

A subclass builds its ``nn.Module``, runs one epoch, and computes the final user and item
vectors; scores are their inner products, so every torch model exposes embeddings.
"""

from __future__ import annotations

import copy
import logging
import math
from abc import abstractmethod
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from tqdm.auto import tqdm

from recsys.errors import ConfigError
from recsys.models.base import FactorRecommender, Recommender, check_positive

log = logging.getLogger(__name__)

Validate = Callable[[Recommender], float]
OnEpoch = Callable[[int, dict[str, float]], None]


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a ``ConfigError``."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"model.device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("model.device=cuda but no CUDA GPU is available: use auto or cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


class TorchRecommender(FactorRecommender):
    """Adam, mini-batches, early stopping; subclasses define the model and the loss.

    Parameters
    ----------
    epochs
        Maximum number of epochs.
    batch_size
        Training examples per step.
    lr
        Adam's learning rate.
    patience
        Stop after this many validations without improvement (0: never stop early).
    min_epochs
        Never stop before this epoch (validation curves of graph models dip before they rise).
    eval_every
        Validate every this many epochs.
    device
        ``auto``, ``cpu`` or ``cuda``.
    seed
        Seeds initialisation, sampling and dropout.
    progress
        Show a progress bar (on a terminal only).
    deterministic
        On CPU, train on one thread so that the same seed gives bit-identical weights
        (multithreaded reductions differ in the last bits from run to run; ~30 % slower).
    """

    def __init__(self, *, epochs: int, batch_size: int, lr: float, patience: int = 5,
                 min_epochs: int = 0, eval_every: int = 1, device: str = "auto", seed: int = 0,
                 progress: bool = True, deterministic: bool = True):  # fmt: skip
        self.epochs = check_positive("model.epochs", epochs, integer=True)
        self.batch_size = check_positive("model.batch_size", batch_size, integer=True)
        self.lr = check_positive("model.lr", lr)
        self.patience = check_positive("model.patience", patience, integer=True, allow_zero=True)
        self.min_epochs = check_positive("model.min_epochs", min_epochs, integer=True,
                                         allow_zero=True)  # fmt: skip
        self.eval_every = check_positive("model.eval_every", eval_every, integer=True)
        resolve_device(device)  # validate now, resolve at fit
        self.device_name = device
        self.seed = int(seed)
        self.progress = progress
        self.deterministic = bool(deterministic)
        self.module: nn.Module | None = None
        self.best_epoch = 0
        self.epochs_run = 0

    # -- what a subclass provides -------------------------------------------------------------
    @abstractmethod
    def build_module(self, train: sp.csr_matrix) -> nn.Module:
        """The trainable module for this training matrix (parameters initialised)."""

    @abstractmethod
    def train_epoch(self, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> float:
        """One pass over the training data; return the mean loss."""

    @abstractmethod
    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n_users, d)`` and ``(n_items, d)`` vectors whose inner products are the scores."""

    # -- the shared loop -----------------------------------------------------------------------
    def fit(self, train: sp.csr_matrix, validate: Validate | None = None,
            on_epoch: OnEpoch | None = None) -> TorchRecommender:  # fmt: skip
        """Train for up to ``epochs``; with ``validate``, keep the best validated weights."""
        self.n_users, self.n_items = train.shape
        self.device = resolve_device(self.device_name)
        forked = [self.device] if self.device.type == "cuda" else []
        threads = torch.get_num_threads()
        if self.deterministic and self.device.type == "cpu":
            torch.set_num_threads(1)  # parallel CPU reductions vary in the last bits otherwise
        with torch.random.fork_rng(devices=forked):
            torch.manual_seed(self.seed)
            generator = torch.Generator().manual_seed(self.seed)
            self.module = self.build_module(train).to(self.device)
            optimizer = torch.optim.Adam(self.module.parameters(), lr=self.lr)
            try:
                self._train(optimizer, generator, validate, on_epoch)
            finally:
                torch.set_num_threads(threads)
        return self

    def fit_validated(self, train: sp.csr_matrix, validate: Validate | None = None,
                      on_epoch: OnEpoch | None = None) -> TorchRecommender:  # fmt: skip
        return self.fit(train, validate=validate, on_epoch=on_epoch)

    def training_summary(self) -> dict[str, float]:
        return {"train/best_epoch": self.best_epoch, "train/epochs_run": self.epochs_run}

    def _train(self, optimizer, generator, validate, on_epoch) -> None:
        best_value, best_state, waited = -math.inf, None, 0
        bar = tqdm(range(1, self.epochs + 1), desc=type(self).__name__, leave=False,
                   disable=not self.progress or None)  # fmt: skip
        for epoch in bar:
            self.module.train()
            record = {"loss": self.train_epoch(optimizer, generator)}
            self.epochs_run = epoch
            if validate is not None and epoch % self.eval_every == 0:
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
            if self.patience and waited >= self.patience and epoch >= self.min_epochs:
                log.info("early stop at epoch %d, best epoch %d", epoch, self.best_epoch)
                break
        if best_state is not None:
            self.module.load_state_dict(best_state)
        else:
            self.best_epoch = self.epochs_run
        self._cache_embeddings()

    def _state(self) -> dict[str, torch.Tensor]:
        return copy.deepcopy(self.module.state_dict())

    @torch.no_grad()
    def _cache_embeddings(self) -> None:
        self.module.eval()
        users, items = self.compute_embeddings()
        self._user_vectors = users.float().cpu().numpy()
        self._item_vectors = items.float().cpu().numpy()


def training_pairs(train: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
    """``(nnz,)`` user and item indices of the training interactions."""
    coo = train.tocoo()
    return torch.from_numpy(coo.row.astype(np.int64)), torch.from_numpy(coo.col.astype(np.int64))


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator):
    """Index tensors of a random permutation of ``range(n)``, ``batch_size`` at a time."""
    order = torch.randperm(n, generator=generator)
    return order.split(batch_size)
