"""GraphSAGE (PyG ``SAGEConv``) on the user-item bipartite graph of the training interactions.

Users and items are the nodes of one graph (users ``0..n_users-1``, items after them) with an
edge each way per training interaction; validation and test interactions never enter message
passing. Node inputs are learnt ID embeddings. A plain SAGEConv + ReLU stack overfits ML-100K
(NDCG@10 ~0.34), so this model adds what closes the gap to LightGCN: no non-linearity between
layers by default, the mean of all layers' outputs as the final vector (layer combination),
edge dropout, L2 on the batch's input embeddings, and early stopping on validation.

Two training modes: ``full_batch`` propagates over the whole graph at every step (ML-100K fits
easily); ``neighbor_sampled`` computes each batch's nodes on a sampled neighbourhood of
``fanouts[l]`` neighbours per node and layer, for graphs that do not fit. The sampler is our
own vectorised torch code: PyG's ``NeighborLoader`` needs the compiled ``pyg-lib`` or
``torch-sparse``, which have no build for this torch on PyPI. Scoring always propagates over the
full training graph (no gradients, so it fits where training would not).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import LGConv, SAGEConv

from recsys.errors import ConfigError
from recsys.memory import FLOAT32
from recsys.models.base import check_bool, check_choice, check_positive, check_probability
from recsys.models.torch_base import (
    BatchLoss,
    TorchRecommender,
    TrainerConfig,
    embedding_l2,
)

MODES = ("full_batch", "neighbor_sampled")


class _GraphProduct(torch.autograd.Function):
    """``A @ x`` for a sparse CSR ``A`` whose transpose ``A^T`` is already built: the backward
    pass's ``A^T @ grad`` uses it. Autograd's own backward of ``torch.sparse.mm`` transposes ``A``
    into a new CSR (a sort of every edge) at every layer of every step: half of LightGCN's epoch."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, adjacency: torch.Tensor, transposed: torch.Tensor):
        ctx.transposed = transposed
        return torch.sparse.mm(adjacency, x)  # what PyG's spmm computes for a sum

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return torch.sparse.mm(ctx.transposed, grad), None, None


def graph_product(adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``adjacency @ x`` (a sum over each target's neighbours), differentiable in ``x``; with
    the transpose that ``propagation_graph`` attached, the backward pass reuses it."""
    if getattr(adjacency, "symmetric", False):
        return _GraphProduct.apply(x, adjacency, adjacency)
    transposed = getattr(adjacency, "transposed", None)
    if transposed is None:  # a graph from elsewhere (or moved): autograd transposes it
        return torch.sparse.mm(adjacency, x)
    return _GraphProduct.apply(x, adjacency, transposed)


class GraphLGConv(LGConv):
    """PyG's ``LGConv`` (weights already in the graph: ``normalize=False``), its sum over a
    sparse graph through ``graph_product``."""

    def __init__(self):
        super().__init__(normalize=False)

    def message_and_aggregate(self, adj_t, x: torch.Tensor) -> torch.Tensor:
        return graph_product(adj_t, x)


class GraphSAGEConv(SAGEConv):
    """PyG's ``SAGEConv``, its sum over a sparse graph through ``graph_product``."""

    def message_and_aggregate(self, adj_t, x) -> torch.Tensor:
        return graph_product(adj_t, x[0])


class SAGEEncoder(nn.Module):
    """ID embeddings -> ``layers`` SAGEConv (mean aggregation) -> mean or last layer."""

    def __init__(self, n_nodes: int, dim: int, layers: int, dropout: float, activation: str,
                 combine: str, root_weight: bool, aggregation: str):  # fmt: skip
        super().__init__()
        self.embedding = nn.Embedding(n_nodes, dim)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.convs = nn.ModuleList(
            GraphSAGEConv(dim, dim, aggr="sum", root_weight=root_weight, bias=False)
            for _ in range(layers)
        )
        for conv in self.convs:  # start as plain neighbour averaging (LightGCN-like)
            nn.init.eye_(conv.lin_l.weight)
            if root_weight:
                nn.init.zeros_(conv.lin_r.weight)
        self.dropout = dropout
        self.activation = activation
        self.combine = combine

    def forward(self, node_ids: torch.Tensor | None, graph: torch.Tensor) -> torch.Tensor:
        """``(n, dim)`` vectors of the nodes ``node_ids`` (all nodes if ``None``), with
        ``graph`` over their local positions: the weighted sparse adjacency of
        ``propagation_graph``, whose weights make the convolutions' sum a mean or GCN's
        symmetric sum."""
        x = self.embedding.weight if node_ids is None else self.embedding(node_ids)  # (n, d)
        layers = [x]
        for conv in self.convs:
            x = conv(x, graph)  # (n, d)
            if self.activation == "relu":
                x = F.relu(x)
            x = F.dropout(x, self.dropout, self.training)
            layers.append(x)
        if self.combine == "mean":
            return torch.stack(layers).mean(dim=0)  # (n, d)
        return x


class GraphSAGERecommender(TorchRecommender):
    """GraphSAGE trained with BPR on the training graph; scores are inner products.

    Parameters
    ----------
    dim
        Embedding and hidden size.
    layers
        SAGEConv layers (2-3).
    dropout
        Feature dropout after each layer.
    edge_dropout
        Share of training edges (both directions of an interaction) dropped at each step.
    activation
        ``none`` or ``relu`` between layers.
    combine
        ``mean`` of the input and every layer's output, or ``last``.
    root_weight
        SAGEConv's separate transform of a node's own vector (added to the neighbours' mean).
    aggregation
        ``mean`` of the neighbours (GraphSAGE's mean aggregator) or ``symmetric``: their sum
        weighted by ``1 / sqrt(deg(u) deg(v))`` (GCN's and LightGCN's normalisation), which
        damps popular items' influence.
    regularization
        L2 weight on the batch's input embeddings (per example).
    map_decay
        Weight of an L2 penalty on the convolutions' maps' distance from where they start
        (``map_drift``): the neighbour map from the identity, the root map from zero. The
        maps start as plain neighbour averaging; unpenalised they drift and overfit
        (validation NDCG@10 at seed 42: free 0.1705, 0.03 0.1798). 0 leaves them free.
    mode
        ``full_batch`` or ``neighbor_sampled``.
    fanouts
        Neighbours sampled per node at each layer (``neighbor_sampled`` mode).
    trainer, seed
        How to train, and the seed (see ``TorchRecommender``).
    """

    def __init__(self, dim: int, layers: int, dropout: float, edge_dropout: float,
                 activation: str, combine: str, root_weight: bool, aggregation: str,
                 regularization: float, map_decay: float, mode: str,
                 fanouts: list[int] | tuple[int, ...], trainer: TrainerConfig,
                 seed: int):  # fmt: skip
        super().__init__(trainer, seed)
        self.dim = check_positive("model.dim", dim, integer=True)
        self.layers = check_positive("model.layers", layers, integer=True)
        self.dropout = check_probability("model.dropout", dropout)
        self.edge_dropout = check_probability("model.edge_dropout", edge_dropout)
        self.regularization = check_positive("model.regularization", regularization,
                                             allow_zero=True)  # fmt: skip
        self.map_decay = check_positive("model.map_decay", map_decay, allow_zero=True)
        check_choice("model.activation", activation, ("none", "relu"))
        check_choice("model.combine", combine, ("mean", "last"))
        check_choice("model.mode", mode, MODES)
        self.activation, self.combine, self.mode = activation, combine, mode
        self.root_weight = check_bool("model.root_weight", root_weight)
        check_choice("model.aggregation", aggregation, ("mean", "symmetric"))
        self.aggregation = aggregation
        self.fanouts = [check_positive("model.fanouts", f, integer=True) for f in fanouts]
        if mode == "neighbor_sampled" and len(self.fanouts) != self.layers:
            raise ConfigError(f"model.fanouts needs one entry per layer ({self.layers}), "
                              f"got {list(fanouts)}")  # fmt: skip

    def parameter_count(self, n_users: int, n_items: int) -> int:
        return (n_users + n_items) * self.dim + 2 * self.layers * self.dim * self.dim

    def activation_memory(self, n_users: int, n_items: int, nnz: int) -> dict[str, int]:
        parts = graph_memory(n_users, n_items, nnz, self.dim, self.layers)
        if self.mode == "neighbor_sampled":  # a step holds its sampled neighbourhood only
            return {what: size for what, size in parts.items() if what.startswith("training")}
        return parts

    def build_module(self, train: sp.csr_matrix) -> nn.Module:
        coo = train.tocoo()
        users = torch.from_numpy(coo.row.astype(np.int64))
        items = torch.from_numpy(coo.col.astype(np.int64))
        n_nodes = self.n_users + self.n_items
        edges = bipartite_edges(users, items, self.n_users).to(self.device)  # (2, 2E)
        # the graph's edges in its CSR order, and each one's interaction: edge dropout keeps
        # or drops an interaction's two edges together, and the order saves a sort a step
        order = torch.argsort(edges[1] * n_nodes + edges[0])  # by target, then source
        self._graph_edges, self._graph_interactions = edges[:, order], order % len(users)
        graph = _symmetric_csr(users.numpy(), items.numpy(), self.n_users, self.n_items)
        self._indptr = torch.from_numpy(graph.indptr.astype(np.int64)).to(self.device)
        self._indices = torch.from_numpy(graph.indices.astype(np.int64)).to(self.device)
        # the full training graph, built once: what scoring propagates over, and every
        # full-batch step's graph when no edge is dropped
        self._graph = propagation_graph(edges, n_nodes, self.aggregation, undirected=True)
        return SAGEEncoder(n_nodes, self.dim, self.layers, self.dropout,
                           self.activation, self.combine, self.root_weight,
                           self.aggregation)  # fmt: skip

    def batch_loss(self, users, items, generator) -> BatchLoss:
        negatives = torch.randint(self.n_items, (len(users),), generator=generator)
        seeds = torch.cat([users, self.n_users + items, self.n_users + negatives.to(
            self.device)])  # (3B,) node ids
        vectors, inputs = self._encode(seeds, generator)  # (3B, d) each
        u, i, j = vectors.split(len(users))
        margin = (u * i).sum(-1) - (u * j).sum(-1)  # (B,)
        penalty = self.regularization * embedding_l2(inputs, examples=len(users))
        if self.map_decay:
            penalty = penalty + self.map_decay * map_drift(self.module.convs)
        return BatchLoss(-F.logsigmoid(margin).mean(), penalty)

    def _encode(self, seeds: torch.Tensor, generator: torch.Generator):
        """Output and input vectors of the ``seeds`` nodes for one training step."""
        if self.mode == "full_batch":
            graph = self._graph
            if self.edge_dropout:  # drop_edges's draw, applied to the graph's sorted edges
                kept = torch.rand(len(self._graph_edges[0]) // 2, generator=generator) \
                    >= self.edge_dropout  # (E,) an interaction's two edges together
                edges = self._graph_edges[:, kept.to(self.device)[self._graph_interactions]]
                graph = sorted_propagation_graph(edges, self.n_users + self.n_items,
                                                 self.aggregation)  # fmt: skip
            return self.module(None, graph)[seeds], self.module.embedding(seeds)
        node_ids, edges, positions = sample_neighborhood(
            seeds, self._indptr, self._indices, self.fanouts, generator
        )
        edges = drop_edges(edges, self.edge_dropout, generator, paired=False)
        graph = propagation_graph(edges, len(node_ids), self.aggregation)
        return self.module(node_ids, graph)[positions], self.module.embedding(seeds)

    def compute_embeddings(self):
        vectors = self.module(None, self._graph)  # (n_users + n_items, d), the full training graph
        return vectors[: self.n_users], vectors[self.n_users :]


def map_drift(convs: nn.ModuleList) -> torch.Tensor:
    """``sum_l ||W_l - I||^2 + ||R_l||^2`` over the convolutions: how far the neighbour maps
    ``W_l`` are from the identity and the root maps ``R_l`` (where present) from zero, the
    point they start from (an L2 penalty toward the start, Li et al.'s L2-SP, ICML 2018)."""
    drift = 0.0
    for conv in convs:
        weight = conv.lin_l.weight  # (d, d)
        drift = drift + (weight - torch.eye(*weight.shape, device=weight.device)).square().sum()
        if conv.root_weight:
            drift = drift + conv.lin_r.weight.square().sum()
    return drift


GRAPH_BYTES = 128  # a training interaction's share of the graph while it is built (measured)


def graph_memory(n_users: int, n_items: int, nnz: int, dim: int, layers: int) -> dict[str, int]:
    """A full-graph model's step: the adjacency (an edge each way: int64 COO indices, float32
    weights, the coalesced copy and the CSR, about ``GRAPH_BYTES`` an interaction at the peak of
    the build, as ``experiments/benchmark_scale.py`` measured for LightGCN) and every layer's
    node vectors, kept for the backward pass."""
    return {"training graph (both directions, with its build)": nnz * GRAPH_BYTES,
            f"node vectors of {layers + 1} layers, kept for backward":
            2 * (layers + 1) * (n_users + n_items) * dim * FLOAT32}  # fmt: skip


def propagation_graph(edge_index: torch.Tensor, n_nodes: int, aggregation: str,
                      undirected: bool = False):  # fmt: skip
    """What the convolutions sum over: the sparse ``(n, n)`` adjacency (row = target) with
    values ``1 / deg(target)`` for ``mean`` (the sum over a row is the neighbours' mean) and
    ``1 / sqrt(deg(source) deg(target))`` for ``symmetric``; an edge given twice counts twice.
    A sparse CSR product is several times faster on CPU than PyG's scatter over an edge index
    (graphsage_classic: 4.6x an epoch). ``undirected``: every edge is there both ways
    (``bipartite_edges``, ``drop_edges`` paired). The graph carries what ``graph_product``
    needs for its backward pass."""
    source, target = edge_index
    adjacency = torch.sparse_coo_tensor(torch.stack([target, source]),
                                        edge_weights(edge_index, n_nodes, aggregation),
                                        (n_nodes, n_nodes), check_invariants=False)  # fmt: skip
    with warnings.catch_warnings():  # "sparse CSR support is in beta": it is what PyG uses
        warnings.simplefilter("ignore", UserWarning)
        return _with_transpose(adjacency.coalesce().to_sparse_csr(), aggregation, undirected)


def sorted_propagation_graph(edge_index: torch.Tensor, n_nodes: int, aggregation: str):
    """``propagation_graph(edge_index, ..., undirected=True)`` of undirected edges already in
    its CSR order (by target, then source; none twice), built without sorting them again: what
    edge dropout needs at every step."""
    source, target = edge_index
    rows = torch.zeros(n_nodes + 1, dtype=torch.int64, device=source.device)
    rows[1:] = torch.cumsum(torch.bincount(target, minlength=n_nodes), dim=0)  # (n + 1,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        graph = torch.sparse_csr_tensor(rows, source, edge_weights(edge_index, n_nodes,
                                                                   aggregation),
                                        (n_nodes, n_nodes))  # fmt: skip
        return _with_transpose(graph, aggregation, undirected=True)


def edge_weights(edge_index: torch.Tensor, n_nodes: int, aggregation: str) -> torch.Tensor:
    """``(E,)`` weight of each edge ``source -> target``: ``1 / deg(target)`` (``mean``) or
    ``1 / sqrt(deg(source) deg(target))`` (``symmetric``), degrees counted over targets."""
    source, target = edge_index
    degree = torch.bincount(target, minlength=n_nodes).float().clamp(min=1)  # (n,)
    if aggregation == "mean":
        return degree.reciprocal()[target]  # (E,)
    return degree[source].rsqrt() * degree[target].rsqrt()  # (E,)


def _with_transpose(graph: torch.Tensor, aggregation: str, undirected: bool) -> torch.Tensor:
    """``graph`` marked for ``graph_product``'s backward pass: the symmetric weights over an
    undirected graph make ``A^T = A`` exactly; otherwise (the mean's ``1 / deg(target)``)
    ``A^T`` is built once here, not once a layer and step."""
    graph.symmetric = aggregation == "symmetric" and undirected
    if not graph.symmetric:
        graph.transposed = graph.t().to_sparse_csr()
    return graph


def bipartite_edges(users: torch.Tensor, items: torch.Tensor, n_users: int) -> torch.Tensor:
    """``(2, 2E)`` edge index: user -> item for every interaction, then item -> user."""
    item_nodes = items + n_users
    return torch.stack([torch.cat([users, item_nodes]), torch.cat([item_nodes, users])])


def drop_edges(edge_index: torch.Tensor, p: float, generator: torch.Generator,
               paired: bool = True) -> torch.Tensor:  # fmt: skip
    """Drop a share ``p`` of edges; with ``paired`` (the layout of ``bipartite_edges``) both
    directions of an interaction go together."""
    if p == 0.0:
        return edge_index
    n = edge_index.shape[1] // 2 if paired else edge_index.shape[1]
    keep = (torch.rand(n, generator=generator) >= p).to(edge_index.device)
    return edge_index[:, torch.cat([keep, keep]) if paired else keep]


def sample_neighborhood(seeds, indptr, indices, fanouts, generator):
    """Sample ``fanouts[l]`` neighbours (with replacement) per frontier node and hop.

    Returns the sampled nodes' global ids ``(n,)``, the sampled edges ``(2, E)`` over local
    positions (neighbour -> node), and the local positions of ``seeds``.
    """
    frontier = torch.unique(seeds)
    sources, targets = [], []
    for fanout in fanouts:
        degree = indptr[frontier + 1] - indptr[frontier]  # (m,)
        nodes = frontier[degree > 0].repeat_interleave(fanout)  # (m' * fanout,)
        degree = (indptr[nodes + 1] - indptr[nodes]).float()
        offsets = (torch.rand(len(nodes), generator=generator).to(degree.device) * degree).long()
        neighbours = indices[indptr[nodes] + offsets]
        sources.append(neighbours)
        targets.append(nodes)
        frontier = torch.unique(neighbours)
    source, target = torch.cat(sources), torch.cat(targets)
    node_ids = torch.unique(torch.cat([seeds, source, target]))  # sorted
    local = torch.stack([torch.searchsorted(node_ids, source),
                         torch.searchsorted(node_ids, target)])  # fmt: skip
    return node_ids, local, torch.searchsorted(node_ids, seeds)


def _symmetric_csr(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int):
    n = n_users + n_items
    rows = np.concatenate([users, items + n_users])
    cols = np.concatenate([items + n_users, users])
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n))
