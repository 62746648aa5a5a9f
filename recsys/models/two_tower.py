"""Two-tower retrieval model: a user tower and an item tower, each from IDs and side features.

User tower: user-id embedding + age bucket, gender, occupation, zip region. Item tower:
item-id embedding + genres (multi-hot), year bucket, title tokens (mean of word embeddings).
Both end in a small MLP and are L2-normalised; the score is their inner product. Trained with
in-batch sampled softmax, corrected by ``log q`` (an item's chance of being in a batch, so
popular items are not over-penalised as negatives; Yi et al. 2019), or with BPR and uniform
negatives.

ID dropout replaces an ID by the "unknown" ID 0 during training, so the towers learn to work
from features alone: a user (or item) never seen in training is scored from its features
(``score_new_users``), with the "unknown" ID. The user tower may drop at its own rate
(``user_id_dropout``), which ``python -m recsys.cold_start`` chooses on users held out of
training (what it chose, and why: experiments/README.md, "Cold start").

The user tower alone, with the feature vocabularies, is what scoring a new user from
demographics needs: ``new_user_parts`` gives it as plain arrays (what the export carries) and
``DemographicsTower`` rebuilds it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recsys.data.features import Features, user_features
from recsys.errors import ConfigError
from recsys.models.base import NewUserParts, check_choice, check_positive, check_probability
from recsys.models.torch_base import BatchLoss, TorchRecommender, TrainerConfig, parameter_l2

LOSSES = ("sampled_softmax", "bpr")
USER_TOWER = "two_tower.user_tower"  # the kind of ``NewUserParts`` this model gives


class Tower(nn.Module):
    """``(B,)`` ids (0 = unknown) and their features -> ``(B, dim)`` unit vectors."""

    def __init__(self, n_ids: int, features: Features, dim: int):
        super().__init__()
        self.id = nn.Embedding(n_ids + 1, dim)
        self.categorical = nn.ModuleDict(
            {name: nn.Embedding(size, dim) for name, size in features.cardinality.items()}
        )
        parts = 1 + len(self.categorical)
        self.multi_hot = None
        if features.multi_hot is not None:
            self.multi_hot = nn.Linear(features.multi_hot.shape[1], dim, bias=False)
            parts += 1
        self.tokens = None
        if features.tokens is not None:
            self.tokens = nn.EmbeddingBag(features.n_tokens, dim, mode="mean", padding_idx=0)
            parts += 1
        self.mlp = nn.Sequential(nn.Linear(parts * dim, 2 * dim), nn.ReLU(),
                                 nn.Linear(2 * dim, dim))  # fmt: skip
        for embedding in (self.id, *self.categorical.values()):
            nn.init.normal_(embedding.weight, std=0.1)

    def forward(self, ids: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The MLP of the concatenated parts ``[id, categorical..., multi-hot, tokens]``.

        Its first layer is ``W [x_1; ...; x_P] + b = b + sum_p W_p x_p``, one block ``W_p``
        per part, and is computed so: a categorical part has a few values (gender: 3), so
        ``W_p`` maps its embedding table once, ``(V, d) -> (V, 2d)``, and rows are gathered
        from that; the multi-hot part goes through ``W_p M`` (``(2d, m)``, m = 19 genres).
        Only the ID and token parts are mapped row by row: a fifth of the user tower's
        multiply-adds of the concatenation, the same function."""
        first = self.mlp[0]
        blocks = iter(first.weight.split(self.id.embedding_dim, dim=1))  # (2d, d) each
        hidden = first.bias + F.linear(self.id(ids), next(blocks))  # (B, 2d)
        for name, layer in self.categorical.items():
            hidden = hidden + F.linear(layer.weight, next(blocks))[features[name]]
        if self.multi_hot is not None:  # (B, m) @ (m, 2d)
            hidden = hidden + features["multi_hot"] @ (next(blocks) @ self.multi_hot.weight).T
        if self.tokens is not None:
            hidden = hidden + F.linear(self.tokens(features["tokens"]), next(blocks))
        return F.normalize(self.mlp[1:](hidden), dim=-1)  # (B, d)


class Distinct(NamedTuple):
    """A batch's tower outputs once per distinct entity: ``vectors`` ``(m, d)``, ``rows``
    ``(B,)`` (row ``b`` of the batch is ``vectors[rows[b]]``), ``entities`` ``(m,)`` indices."""

    vectors: torch.Tensor
    rows: torch.Tensor
    entities: torch.Tensor


class TwoTowerModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, users: Features, items: Features, dim: int):
        super().__init__()
        self.user = Tower(n_users, users, dim)
        self.item = Tower(n_items, items, dim)


class TwoTowerRecommender(TorchRecommender):
    """Two towers over IDs and side features; see the module docstring.

    Parameters
    ----------
    user_features, item_features
        Side features of every user / item index (``recsys.data.features``); given by the
        entry point, as they depend on the data.
    dim
        Output (and embedding) size.
    loss
        ``sampled_softmax`` (in-batch, log-q corrected) or ``bpr``.
    temperature
        Softmax temperature on the cosine scores.
    id_dropout
        Probability of replacing an ID by "unknown" during training, in both towers unless
        ``user_id_dropout`` is given.
    user_id_dropout
        The user tower's own probability (``None``: ``id_dropout``). The rows trained as the
        "unknown" user are what the demographics path learns from, while the item tower's
        dropout makes every item vector, which warm and new users alike are scored against,
        partly a features-only one: cold start chooses this one alone.
    weight_decay
        Weight of an L2 penalty on every parameter, added to the loss (coupled L2: Adam then
        rescales it per parameter; not AdamW's decoupled weight decay).
    trainer, seed
        How to train, and the seed (see ``TorchRecommender``).
    """

    uses_side_features = True

    def __init__(self, user_features: Features, item_features: Features, dim: int, loss: str,
                 temperature: float, id_dropout: float, user_id_dropout: float | None,
                 weight_decay: float, trainer: TrainerConfig, seed: int):  # fmt: skip
        super().__init__(trainer, seed)
        self.dim = check_positive("model.dim", dim, integer=True)
        self.temperature = check_positive("model.temperature", temperature)
        self.weight_decay = check_positive("model.weight_decay", weight_decay, allow_zero=True)
        self.loss = check_choice("model.loss", loss, LOSSES)
        self.id_dropout = check_probability("model.id_dropout", id_dropout)
        self.user_id_dropout = (None if user_id_dropout is None
                                else check_probability("model.user_id_dropout", user_id_dropout))
        self._user_rate = self.id_dropout if user_id_dropout is None else self.user_id_dropout
        self.user_features, self.item_features = user_features, item_features

    def parameter_count(self, n_users: int, n_items: int) -> int:
        return (n_users + n_items + 2) * self.dim  # id embeddings: the large part

    def build_module(self, train: sp.csr_matrix) -> nn.Module:
        for name, features, n in (("user", self.user_features, self.n_users),
                                  ("item", self.item_features, self.n_items)):  # fmt: skip
            if features is None or len(next(iter(features.categorical.values()))) != n:
                raise ConfigError(f"two-tower needs {name} features for all {n} {name}s")
        self._user_inputs = feature_tensors(self.user_features, self.device)
        self._item_inputs = feature_tensors(self.item_features, self.device)
        popularity = np.asarray(train.sum(axis=0)).ravel() + 1.0  # +1: no log(0)
        self._log_q = torch.from_numpy(np.log(popularity / popularity.sum())).float().to(
            self.device)  # (n_items,) log-probability of being a batch's positive
        return TwoTowerModule(self.n_users, self.n_items, self.user_features,
                              self.item_features, self.dim)  # fmt: skip

    def _encode(self, tower: Tower, index: torch.Tensor, inputs) -> torch.Tensor:
        """``(B, d)`` tower outputs of the entities ``index``, by their IDs."""
        return tower(index + 1, {name: value[index] for name, value in inputs.items()})

    def _encode_batch(self, tower: Tower, index: torch.Tensor, inputs, generator: torch.Generator,
                      dropout: float) -> Distinct:  # fmt: skip
        """A training batch's tower outputs, IDs dropped at random (to "unknown", 0) with
        probability ``dropout``.

        A batch names many users and items more than once (at 1024 interactions of ML-100K,
        about 500 distinct users and 560 items): the tower runs once per distinct (entity,
        ID dropped or not), and ``rows`` says which one each row of the batch is."""
        ids = index + 1  # 0 is "unknown"
        if dropout > 0:
            drop = torch.rand(len(ids), generator=generator).to(ids.device) < dropout
            ids = ids.masked_fill(drop, 0)
        keys, rows = torch.unique(2 * index + (ids == 0), return_inverse=True)  # (m,), (B,)
        entities = keys // 2  # (m,)
        distinct_ids = (entities + 1).masked_fill(keys % 2 == 1, 0)
        vectors = tower(distinct_ids, {name: value[entities] for name, value in inputs.items()})
        return Distinct(vectors, rows, entities)

    def batch_loss(self, users, items, generator) -> BatchLoss:
        u = self._encode_batch(self.module.user, users, self._user_inputs, generator,
                               self._user_rate)  # fmt: skip
        i = self._encode_batch(self.module.item, items, self._item_inputs, generator,
                               self.id_dropout)  # fmt: skip
        if self.loss == "sampled_softmax":
            loss = self._sampled_softmax(u, i, items)
        else:
            negatives = torch.randint(self.n_items, (len(users),), generator=generator)
            j = self._encode_batch(self.module.item, negatives.to(self.device),
                                   self._item_inputs, generator, self.id_dropout)  # fmt: skip
            u_b, i_b, j_b = (part.vectors[part.rows] for part in (u, i, j))  # (B, d) each
            margin = ((u_b * i_b).sum(-1) - (u_b * j_b).sum(-1)) / self.temperature  # (B,)
            loss = -F.logsigmoid(margin).mean()
        if not self.weight_decay:
            return BatchLoss(loss, torch.zeros((), device=loss.device))
        return BatchLoss(loss, self.weight_decay * parameter_l2(self.module.parameters()))

    def _sampled_softmax(self, u: Distinct, i: Distinct, items: torch.Tensor) -> torch.Tensor:
        """In-batch softmax: row ``b``'s positive is its item, its negatives the batch's other
        items (an item the batch holds ``c`` times counts ``c`` times; another row with the same
        item is left out), every logit ``u . i / T - log q(item)``.

        Over the distinct items of the batch, that is a softmax whose logits carry ``log c``:
        ``log 1`` for the row's own (item, dropped) version, ``log 0 = -inf`` for the other
        versions of its item. The same loss as over the ``(B, B)`` matrix of every pair, from a
        ``(users, items)`` product of the distinct ones (about a quarter of the multiply-adds)."""
        scores = u.vectors @ i.vectors.T / self.temperature \
            - self._log_q[i.entities][None, :]  # (m_users, m_items)
        logits = scores[u.rows]  # (B, m_items)
        counts = torch.bincount(i.rows, minlength=len(i.entities)).to(logits.dtype)  # (m_items,)
        weight = counts.expand_as(logits).masked_fill(items[:, None] == i.entities[None, :], 0)
        positive = torch.arange(len(items), device=logits.device)
        weight = weight.index_put((positive, i.rows), torch.ones((), device=logits.device))
        return F.cross_entropy(logits + weight.log(), i.rows)

    def compute_embeddings(self):
        users = torch.arange(self.n_users, device=self.device)
        items = torch.arange(self.n_items, device=self.device)
        return (self._encode(self.module.user, users, self._user_inputs),
                self._encode(self.module.item, items, self._item_inputs))  # fmt: skip

    def new_user_embeddings(self, features: Features) -> np.ndarray:
        """``(B, dim)`` vectors of users known only by their features (cold start)."""
        self.module.eval()
        return unknown_id_vectors(self.module.user, feature_tensors(features, self.device))

    def score_new_users(self, features: Features) -> np.ndarray:
        """``(B, n_items)`` scores for users never seen in training, from features alone."""
        return self.new_user_embeddings(features) @ self.item_embeddings.T

    def new_user_parts(self) -> NewUserParts:
        """The user tower (of its ID embeddings only row 0, "unknown": a new user has no
        other) and the user features' vocabularies, for ``DemographicsTower``."""
        if self.module is None:
            raise ConfigError("new_user_parts needs a fitted two-tower model: call fit first")
        weights = {name: value.detach().cpu().numpy()
                   for name, value in self.module.user.state_dict().items()}  # fmt: skip
        weights["id.weight"] = weights["id.weight"][:1]  # (1, dim)
        features = self.user_features
        spec = {"dim": self.dim, "cardinality": dict(features.cardinality),
                "vocabularies": features.vocabularies}  # fmt: skip
        return NewUserParts(USER_TOWER, spec, weights)


class DemographicsTower:
    """A two-tower model's user tower rebuilt from its ``new_user_parts``: vectors of users
    known only by their demographics, on the CPU.

    ``embed(users)`` takes a frame of ``age, gender, occupation, zip_code`` (as
    ``recsys.data.features.user_features`` reads them; a value the training data never had
    counts as unknown) and gives the ``(B, dim)`` vectors whose inner products with the model's
    item vectors are the scores: ``TwoTowerRecommender.new_user_embeddings`` of the same users.
    """

    def __init__(self, parts: NewUserParts):
        if parts.kind != USER_TOWER:
            raise ConfigError(f"DemographicsTower needs parts of kind {USER_TOWER}, got "
                              f"{parts.kind!r}")  # fmt: skip
        spec = parts.spec
        self.vocabularies = {name: list(values) for name, values in spec["vocabularies"].items()}
        self._encoding = Features({}, dict(spec["cardinality"]), vocabularies=self.vocabularies)
        self.tower = Tower(0, self._encoding, int(spec["dim"]))  # IDs: only "unknown"
        self.tower.load_state_dict({name: torch.from_numpy(np.array(value))
                                    for name, value in parts.weights.items()})  # fmt: skip
        self.tower.eval()

    def embed(self, users: pd.DataFrame) -> np.ndarray:
        """``(len(users), dim)`` float32 vectors of these users' demographics."""
        features = user_features(users, like=self._encoding)
        return unknown_id_vectors(self.tower, feature_tensors(features, torch.device("cpu")))


def feature_tensors(features: Features, device: torch.device) -> dict[str, torch.Tensor]:
    """The tower's inputs: each categorical code column, and the multi-hot and token
    matrices where ``features`` has them, as tensors on ``device``."""
    tensors = {n: torch.from_numpy(c).to(device) for n, c in features.categorical.items()}
    if features.multi_hot is not None:
        tensors["multi_hot"] = torch.from_numpy(features.multi_hot).to(device)
    if features.tokens is not None:
        tensors["tokens"] = torch.from_numpy(features.tokens).to(device)
    return tensors


@torch.no_grad()
def unknown_id_vectors(tower: Tower, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    """``(B, dim)`` float32 outputs of ``tower`` for entities with the "unknown" ID 0: their
    vectors from features alone."""
    ids = torch.zeros(len(next(iter(inputs.values()))), dtype=torch.int64,
                      device=next(tower.parameters()).device)  # fmt: skip
    return tower(ids, inputs).float().cpu().numpy()
