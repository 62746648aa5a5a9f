"""LightGCN (He et al., SIGIR 2020): ID embeddings smoothed over the training graph by ``LGConv``.

Users and items are the nodes of one graph (users ``0..n_users-1``, items after them) with an
edge each way per training interaction; validation and test interactions never enter message
passing (the refit's graph is train + validation, as every model's refit data is). Each layer is
``E^(l+1) = D^-1/2 A D^-1/2 E^(l)``: symmetric normalisation, no feature transform, no
non-linearity; a node's final vector is the mean of its layers ``0..L`` (alpha = 1 / (L + 1)) and
a score is the inner product of a user's and an item's final vectors. Trained with BPR on
uniformly sampled negatives and L2 on the batch's layer-0 embeddings, propagating over the full
training graph at every step.

The module is PyG's ``torch_geometric.nn.models.LightGCN`` (an ``Embedding`` and ``LGConv``
layers): its ``get_embedding`` is exactly the propagation above, and the trainer needs nothing
else from it. Its ``recommendation_loss`` is not used: the trainer takes the loss and the penalty
apart (``BatchLoss``), and the L2 is ``embedding_l2``'s, as for BPR-MF and GraphSAGE.
The graph is normalised once (``normalized_adjacency``), not by ``LGConv`` at every layer and
step: message passing over a sparse CSR matrix is ~10x faster on CPU than over an edge index.
Its layers are ``GraphLGConv``: PyG's ``LGConv``, whose backward pass reuses the (symmetric)
graph instead of having autograd transpose it at every layer and step (half of an epoch).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn.models import LightGCN

from recsys.models.base import check_positive
from recsys.models.graphsage import (
    GraphLGConv,
    bipartite_edges,
    graph_memory,
    propagation_graph,
)
from recsys.models.torch_base import BatchLoss, TorchRecommender, TrainerConfig, embedding_l2


class LightGCNRecommender(TorchRecommender):
    """LightGCN trained with BPR on the training graph; scores are inner products.

    Parameters
    ----------
    dim
        Embedding size (of every layer).
    layers
        ``LGConv`` layers L; the final vector is the mean of layers ``0..L``.
    regularization
        L2 weight on the layer-0 embeddings of the batch's users, positive and negative items
        (sum of squares per example; the reference code halves it, so its 1e-4 is 5e-5 here).
    negatives
        Negatives drawn uniformly for each positive; the loss averages over them.
    trainer, seed
        How to train, and the seed (see ``TorchRecommender``).

    Layer-0 embeddings start as PyG's (Xavier uniform, as the paper's TensorFlow code). The rare
    draw of a training positive as a negative is kept, as in BPR-MF.
    """

    def __init__(self, dim: int, layers: int, regularization: float, negatives: int,
                 trainer: TrainerConfig, seed: int):  # fmt: skip
        super().__init__(trainer, seed)
        self.dim = check_positive("model.dim", dim, integer=True)
        self.layers = check_positive("model.layers", layers, integer=True)
        self.regularization = check_positive("model.regularization", regularization,
                                             allow_zero=True)  # fmt: skip
        self.negatives = check_positive("model.negatives", negatives, integer=True)

    def parameter_count(self, n_users: int, n_items: int) -> int:
        return (n_users + n_items) * self.dim

    def activation_memory(self, n_users: int, n_items: int, nnz: int) -> dict[str, int]:
        return graph_memory(n_users, n_items, nnz, self.dim, self.layers)

    def build_module(self, train: sp.csr_matrix) -> nn.Module:
        self._graph = normalized_adjacency(train, self.device)  # the training edges only
        module = LightGCN(self.n_users + self.n_items, self.dim, self.layers)
        module.convs = nn.ModuleList(GraphLGConv() for _ in range(self.layers))  # no weights
        return module

    def batch_loss(self, users, items, generator) -> BatchLoss:
        n = self.negatives
        negatives = torch.randint(self.n_items, (len(users), n), generator=generator)
        negatives = negatives.to(self.device)  # (B, n)
        nodes = self.module.get_embedding(self._graph)  # (n_users + n_items, d), full graph
        u = nodes[users]  # (B, d)
        positive = (u * nodes[self.n_users + items]).sum(-1)  # (B,)
        negative = (u[:, None, :] * nodes[self.n_users + negatives]).sum(-1)  # (B, n)
        margin = positive[:, None] - negative  # (B, n)
        initial = self.module.embedding  # layer 0, what the paper regularises
        l2 = embedding_l2(initial(users), initial(self.n_users + items), examples=len(users)) \
            + embedding_l2(initial(self.n_users + negatives), examples=len(users) * n)
        return BatchLoss(-F.logsigmoid(margin).mean(), self.regularization * l2)

    def compute_embeddings(self):
        nodes = self.module.get_embedding(self._graph)  # (n_users + n_items, d)
        return nodes[: self.n_users], nodes[self.n_users :]


def normalized_adjacency(train: sp.csr_matrix,
                         device: torch.device | str = "cpu") -> torch.Tensor:  # fmt: skip
    """``D^-1/2 A D^-1/2`` of the user-item graph of ``train``, a sparse CSR tensor.

    Parameters
    ----------
    train
        ``(n_users, n_items)`` interactions; each is an edge user <-> item.
    device
        Where the graph is built and kept.

    Returns
    -------
    torch.Tensor
        ``(n_users + n_items, n_users + n_items)``, users first; entry ``(v, w)`` is
        ``1 / sqrt(deg(v) deg(w))`` for an edge, 0 otherwise (isolated nodes: a zero row).
    """
    coo = train.tocoo()
    users = torch.from_numpy(coo.row.astype(np.int64))
    items = torch.from_numpy(coo.col.astype(np.int64))
    edges = bipartite_edges(users, items, train.shape[0]).to(device)  # (2, 2E)
    return propagation_graph(edges, sum(train.shape), "symmetric", undirected=True)
