"""Mult-VAE: a variational autoencoder of users' item rows (Liang et al. 2018, WWW).

A user's binary training row is L2-normalised, dropped out (training only) and encoded by an MLP
``n_items -> hidden -> 2 latent`` (tanh between layers) into the mean ``mu`` and log-variance of a
Gaussian; a sample ``z = mu + sigma * eps`` is decoded by ``latent -> hidden -> n_items`` (tanh
between layers) into logits over the catalogue. The loss is the multinomial negative
log-likelihood of the row under ``softmax(logits)`` plus ``beta`` times the KL divergence from
the standard normal prior, with ``beta`` rising linearly from 0 to ``beta_cap`` over the first
``anneal_steps`` updates (Liang's KL annealing). Scoring decodes ``mu`` (no sampling, no
dropout), so the scores are the logits of the decoder's last layer, ``h_u . W_i + b_i`` with
``h_u`` its last hidden layer: an inner product of ``[h_u, 1]`` and ``[W_i, b_i]``, which are
this model's user and item embeddings. A user outside training is scored by encoding their
items (``fold_in``); ``new_user_parts`` gives the encoder and the decoder's hidden layer as
plain arrays (what the export carries) and ``VAEFoldIn`` rebuilds them to do the same.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recsys.errors import ConfigError
from recsys.memory import FLOAT32
from recsys.models.base import NewUserParts, binary_rows, check_positive, check_probability
from recsys.models.torch_base import BatchLoss, TorchRecommender, TrainerConfig, parameter_l2

ENCODE_BATCH = 1024  # users encoded at once when scoring (bounds memory at 1024 x n_items)
ENCODER = "multvae.encoder"  # the kind of ``NewUserParts`` this model gives
DECODER_OUT = ("decoder_out.weight", "decoder_out.bias")  # the item vectors: not new-user parts


class MultVAEModule(nn.Module):
    """Encoder ``n_items -> hidden -> 2 latent`` and decoder ``latent -> hidden -> n_items``."""

    def __init__(self, n_items: int, hidden: int, latent: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n_items, hidden), nn.Tanh(),
                                     nn.Linear(hidden, 2 * latent))  # fmt: skip
        self.decoder_hidden = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh())
        self.decoder_out = nn.Linear(hidden, n_items)
        for layer in (*self.encoder, *self.decoder_hidden, self.decoder_out):
            if isinstance(layer, nn.Linear):  # as Liang's code: Xavier, biases N(0, 0.001^2)
                nn.init.xavier_uniform_(layer.weight)
                nn.init.trunc_normal_(layer.bias, std=0.001, a=-0.002, b=0.002)

    def encode(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, n_items)`` normalised rows -> ``(B, latent)`` mean and log-variance."""
        mu, log_var = self.encoder(inputs).chunk(2, dim=1)  # (B, 2 latent) -> 2 x (B, latent)
        return mu, log_var

    def forward(self, inputs: torch.Tensor, noise: torch.Tensor | None = None):
        """Logits ``(B, n_items)``, mean and log-variance of ``inputs``; ``z = mu`` without
        ``noise``, else ``mu + exp(log_var / 2) * noise``."""
        mu, log_var = self.encode(inputs)
        z = mu if noise is None else mu + torch.exp(0.5 * log_var) * noise  # (B, latent)
        return self.decoder_out(self.decoder_hidden(z)), mu, log_var

    def user_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        """``(B, n_items)`` binary rows -> ``(B, hidden + 1)`` vectors ``[h_u, 1]``: the last
        hidden layer decoded from ``mu``, whose inner products with ``[W_i, b_i]`` (the
        output layer's weights and biases) are the scores."""
        mu, _ = self.encode(F.normalize(rows, dim=1))  # (B, latent)
        hidden = self.decoder_hidden(mu)  # (B, hidden)
        return torch.cat([hidden, torch.ones(len(hidden), 1, device=hidden.device)], dim=1)


def multinomial_nll(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean over users of ``-sum_i x_ui log softmax(logits_u)_i`` (the multinomial
    log-likelihood without its constant)."""
    return -(F.log_softmax(logits, dim=1) * rows).sum(dim=1).mean()


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Mean over users of ``KL(N(mu, diag(sigma^2)) || N(0, I))
    = 1/2 sum_k (mu_k^2 + sigma_k^2 - 1 - log sigma_k^2)``."""
    return 0.5 * (mu.square() + log_var.exp() - 1.0 - log_var).sum(dim=1).mean()


class MultVAERecommender(TorchRecommender):
    """Mult-VAE trained on batches of users; see the module docstring.

    Parameters
    ----------
    hidden
        Width of the encoder's and decoder's hidden layer (Liang: 600).
    latent
        Size of ``z`` (Liang: 200).
    dropout
        Probability of dropping an entry of the normalised input row in training (Liang: 0.5).
    beta_cap
        The largest KL weight ``beta`` (Liang: 0.2).
    anneal_steps
        Updates over which ``beta`` rises linearly from 0 to ``beta_cap`` (0: ``beta_cap`` from
        the start). Liang's code raises ``beta`` by 1/200,000 an update, so it reaches 0.2 after
        40,000 updates, about 170 of its 200 epochs on ML-20M; a refit repeats the schedule.
    weight_decay
        Weight of an L2 penalty on every weight matrix (not the biases), added to the loss
        (Liang's Mult-VAE: 0).
    trainer, seed
        How to train (``batch_size`` counts users), and the seed (see ``TorchRecommender``).
    """

    batch_unit = "users"

    def __init__(self, hidden: int, latent: int, dropout: float, beta_cap: float,
                 anneal_steps: int, weight_decay: float, trainer: TrainerConfig,
                 seed: int):  # fmt: skip
        super().__init__(trainer, seed)
        self.hidden = check_positive("model.hidden", hidden, integer=True)
        self.latent = check_positive("model.latent", latent, integer=True)
        self.dropout = check_probability("model.dropout", dropout)
        self.beta_cap = check_positive("model.beta_cap", beta_cap, allow_zero=True)
        self.anneal_steps = check_positive("model.anneal_steps", anneal_steps, integer=True,
                                           allow_zero=True)  # fmt: skip
        self.weight_decay = check_positive("model.weight_decay", weight_decay, allow_zero=True)
        self._rows: sp.csr_matrix | None = None

    def parameter_count(self, n_users: int, n_items: int) -> int:
        return 2 * n_items * (self.hidden + 1) + 3 * self.hidden * self.latent

    def activation_memory(self, n_users: int, n_items: int, nnz: int) -> dict[str, int]:
        return {"a batch of dense rows (input, dropout, logits, their gradients)":
                6 * min(self.trainer.batch_size, n_users) * n_items * FLOAT32}  # fmt: skip

    def build_module(self, train: sp.csr_matrix) -> nn.Module:
        self._rows = binary_rows(train)
        return MultVAEModule(self.n_items, self.hidden, self.latent)

    def beta(self, step: int) -> float:
        """The KL weight at update ``step`` (0-based):
        ``beta_cap * min(1, step / anneal_steps)``."""
        if self.anneal_steps == 0:
            return self.beta_cap
        return self.beta_cap * min(1.0, step / self.anneal_steps)

    def batch_loss(self, users, items, generator) -> BatchLoss:
        rows = self._dense_rows(self._rows[users.cpu().numpy()])  # (B, n_items)
        keep = torch.rand(rows.shape, generator=generator) >= self.dropout
        inputs = F.normalize(rows, dim=1) * keep.to(self.device) / (1.0 - self.dropout)
        noise = torch.randn(len(rows), self.latent, generator=generator).to(self.device)
        logits, mu, log_var = self.module(inputs, noise)
        penalty = self.beta(self.steps) * gaussian_kl(mu, log_var)
        if self.weight_decay:
            weights = (p for name, p in self.module.named_parameters() if name.endswith("weight"))
            penalty = penalty + self.weight_decay * parameter_l2(weights)
        return BatchLoss(multinomial_nll(logits, rows), penalty)

    def compute_embeddings(self):
        return self._user_vectors_of(self._rows), self._item_vectors_of()

    def _item_vectors_of(self) -> torch.Tensor:
        out = self.module.decoder_out
        return torch.cat([out.weight, out.bias[:, None]], dim=1)  # (n_items, hidden + 1)

    def _user_vectors_of(self, rows: sp.csr_matrix) -> torch.Tensor:
        """``(B, hidden + 1)`` vectors ``[h_u, 1]`` of binary ``rows``, decoded from ``mu``."""
        vectors = [torch.zeros(0, self.hidden + 1, device=self.device)]  # no rows at all
        for start in range(0, rows.shape[0], ENCODE_BATCH):
            dense = self._dense_rows(rows[start : start + ENCODE_BATCH])  # (b, n_items)
            vectors.append(self.module.user_vectors(dense))  # (b, hidden + 1)
        return torch.cat(vectors)

    def _dense_rows(self, rows: sp.csr_matrix) -> torch.Tensor:
        return torch.from_numpy(rows.toarray()).to(self.device)  # (B, n_items) float32

    @torch.no_grad()
    def fold_in(self, rows: sp.spmatrix) -> np.ndarray:
        """``(B, hidden + 1)`` user vectors of users known only by the items they liked.

        Parameters
        ----------
        rows
            ``(B, n_items)`` sparse matrix whose non-zeros are each user's liked items (any
            positive value counts as 1); a training user's own training row gives back their
            ``user_embeddings`` row.

        Returns
        -------
        np.ndarray
            float32 vectors whose inner products with ``item_embeddings`` are the scores.
        """
        if self.module is None:
            raise ConfigError("fold_in needs a fitted Mult-VAE: call fit first")
        rows = sp.csr_matrix(rows)
        if rows.shape[1] != self.n_items:
            raise ConfigError(f"fold_in needs rows over the {self.n_items} items, got shape "
                              f"{rows.shape}")  # fmt: skip
        self.module.eval()
        return self._user_vectors_of(binary_rows(rows)).float().cpu().numpy()

    def score_fold_in(self, rows: sp.spmatrix) -> np.ndarray:
        """``(B, n_items)`` scores of users known only by their liked items (see ``fold_in``);
        the liked items themselves are not masked."""
        return self.fold_in(rows) @ self.item_embeddings.T  # (B, d) @ (d, n_items)

    def new_user_parts(self) -> NewUserParts:
        """The encoder and the decoder's hidden layer, for ``VAEFoldIn`` (the output layer is
        the item vectors, which the export carries already)."""
        if self.module is None:
            raise ConfigError("new_user_parts needs a fitted Mult-VAE: call fit first")
        weights = {name: value.detach().cpu().numpy()
                   for name, value in self.module.state_dict().items()
                   if name not in DECODER_OUT}  # fmt: skip
        spec = {"n_items": self.n_items, "hidden": self.hidden, "latent": self.latent}
        return NewUserParts(ENCODER, spec, weights)


class VAEFoldIn:
    """A Mult-VAE's encoder rebuilt from its ``new_user_parts``, on the CPU: the vectors of
    users known only by the items they liked, as ``MultVAERecommender.fold_in`` gives them."""

    def __init__(self, parts: NewUserParts):
        if parts.kind != ENCODER:
            raise ConfigError(f"VAEFoldIn needs parts of kind {ENCODER}, got {parts.kind!r}")
        spec = parts.spec
        self.n_items = int(spec["n_items"])
        self.module = MultVAEModule(self.n_items, int(spec["hidden"]), int(spec["latent"]))
        found = self.module.load_state_dict({name: torch.from_numpy(np.array(value))
                                             for name, value in parts.weights.items()},
                                            strict=False)  # fmt: skip
        if found.unexpected_keys or set(found.missing_keys) != set(DECODER_OUT):
            raise ConfigError(f"Mult-VAE parts do not fit the module: missing "
                              f"{found.missing_keys}, unexpected {found.unexpected_keys}")
        self.module.eval()

    @torch.no_grad()
    def vectors(self, rows: sp.spmatrix) -> np.ndarray:
        """``(B, hidden + 1)`` float32 vectors of ``(B, n_items)`` rows of liked items."""
        dense = torch.from_numpy(binary_rows(rows).toarray())  # (B, n_items)
        return self.module.user_vectors(dense).numpy()

