"""TANGNN (E, Zhang, Xia & Xu 2024, "TANGNN: a Concise, Scalable and Effective Graph Neural Networks with
Top-m Attention Mechanism for Graph Representation Learning"): every layer aggregates a node's features
twice - from the m nodes of the whole graph it attends to most, and from its sampled neighbours - and
concatenates the two, as the next layer's input:

    a_i = sum_{j in T_m(i)} softmax_j(q_i . k_j / sqrt(d)) v_j,   q = W_q h, k = W_k h, v = W_v h
          T_m(i): the m nodes j of i's own graph (i included) with the largest q_i . k_j
    n_i = W_r h_i + W_l mean_{j in S(i)} h_j                          (GraphSAGE's mean aggregator)
          S(i): up to `num_neighbors` in-neighbours of i, drawn afresh per layer and step in training
    h_i' = Dropout(ReLU([n_i || a_i]))                                   (2 x hidden wide)

Only the m selected keys enter the softmax, so a node reaches far-away nodes of similar content
at O(N m d) memory. The selection runs without gradient (top-m is piecewise constant) in chunks
of queries over each graph's own keys (`top_m_keys`), so a 20k-node graph never holds its N x N
scores at once; the m selected scores are then recomputed with gradient. Graphs of a batch never
see each other. Without positional encodings the first layer reads the raw features, as in the
authors' code (and as gcn does here).

Deviations: (1) the paper ranks candidates through their cosine similarity to a learned auxiliary
vector (its fast Top-m algorithm; the authors' public code picks one set of m nodes per graph that
way); here every node selects its own exact top-m by q . k. (2) Evaluation aggregates all
neighbours (no sampling), as PyG's full-batch GraphSAGE inference, so eval outputs are
deterministic. (3) One attention head; edge features are not read. (4) The task adds its own head
(linear) in place of the authors' MLP on the concatenated features.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.nn import SAGEConv
from torch_geometric.utils import degree, to_dense_batch

from labformer.errors import UserError
from labformer.models.graph.base import GraphBackbone
from labformer.models.graph.common import NodeEncoder
from labformer.registry import register

SCORE_CHUNK = 2 ** 22  # query-key scores held at once while selecting (16 MiB in float32)


@torch.no_grad()
def top_m_keys(q: Tensor, k: Tensor, graph: Tensor, m: int, chunk: int = SCORE_CHUNK) -> tuple[Tensor, Tensor]:
    """For every node i: (keys [N, m'], real [N, m']) - the indices of the m' = min(m, largest graph)
    nodes of i's graph with the largest q_i . k_j, best first, and which slots hold a real node (a
    graph of n < m' nodes fills only n; its other slots point at i itself and must be masked)."""
    order = torch.argsort(graph, stable=True)  # to_dense_batch wants nodes grouped by graph
    sorted_graph = graph[order]
    dense_q, mask = to_dense_batch(q[order], sorted_graph)  # [B, L, d]
    dense_k, _ = to_dense_batch(k[order], sorted_graph)
    b, length, _ = dense_q.shape
    keys_t = dense_k.transpose(1, 2).contiguous()
    rows = max(1, chunk // max(1, b * length))
    slots, scores = [], None
    for start in range(0, length, rows):
        queries = dense_q[:, start:start + rows]
        if scores is None or scores.shape[1] != queries.shape[1]:  # one buffer: a fresh one per chunk bloats the heap
            scores = queries.new_empty(b, queries.shape[1], length)
        torch.bmm(queries, keys_t, out=scores)  # [B, rows, L]
        scores.masked_fill_(~mask[:, None, :], float("-inf"))  # padding: the other graphs' slots
        slots.append(scores.topk(min(m, length), dim=-1).indices)
    slot = torch.cat(slots, 1)[mask]  # [N, m'] positions inside each query's graph, queries in sorted order
    sizes = mask.sum(1)
    first = sizes.cumsum(0) - sizes
    real = slot < sizes[sorted_graph, None]
    own = torch.arange(len(order), device=q.device)[:, None]
    key_sorted = torch.where(real, first[sorted_graph, None] + slot, own)
    keys, real_out = torch.empty_like(key_sorted), torch.empty_like(real)
    keys[order], real_out[order] = order[key_sorted], real
    return keys, real_out


def top_m_attention(q: Tensor, k: Tensor, v: Tensor, graph: Tensor, m: int, chunk: int = SCORE_CHUNK) -> Tensor:
    """a_i = sum_{j in T_m(i)} softmax_j(q_i . k_j / sqrt(d)) v_j, T_m(i) from `top_m_keys`."""
    keys, real = top_m_keys(q, k, graph, m, chunk)
    scores = torch.einsum("nd,nmd->nm", q, k[keys]) / math.sqrt(q.shape[-1])
    weights = scores.masked_fill(~real, float("-inf")).softmax(-1)
    return torch.einsum("nm,nmd->nd", weights, v[keys])


def sample_neighbours(edge_index: Tensor, num_nodes: int, per_node: int) -> Tensor:
    """Up to `per_node` incoming edges of every node, drawn uniformly without replacement."""
    target = edge_index[1]
    shuffled = torch.randperm(target.numel(), device=target.device)
    grouped = shuffled[torch.argsort(target[shuffled], stable=True)]  # by target, random order within
    deg = degree(target, num_nodes, dtype=torch.long)
    rank = torch.arange(target.numel(), device=target.device) - (deg.cumsum(0) - deg)[target[grouped]]
    return edge_index[:, grouped[rank < per_node]]


class TopMLayer(nn.Module):
    """One TANGNN layer: [GraphSAGE mean aggregation || top-m attention], 2 x hidden wide (module docstring)."""

    def __init__(self, in_channels: int, hidden: int, top_m: int, num_neighbors: int):
        super().__init__()
        self.top_m, self.num_neighbors = top_m, num_neighbors
        self.q = nn.Linear(in_channels, hidden, bias=False)
        self.k = nn.Linear(in_channels, hidden, bias=False)
        self.v = nn.Linear(in_channels, hidden, bias=False)
        self.neighbours = SAGEConv(in_channels, hidden, aggr="mean")

    def forward(self, h: Tensor, edge_index: Tensor, graph: Tensor) -> Tensor:
        if self.training and self.num_neighbors:
            edge_index = sample_neighbours(edge_index, h.shape[0], self.num_neighbors)
        near = self.neighbours(h, edge_index)
        far = top_m_attention(self.q(h), self.k(h), self.v(h), graph, self.top_m)
        return torch.cat([near, far], -1)


class TANGNN(GraphBackbone):
    def __init__(self, in_dim: int, hidden: int, num_layers: int, top_m: int, num_neighbors: int, dropout: float,
                 lap_pe_dim: int = 0, rw_se_dim: int = 0, mag_pe_dim: int = 0):
        super().__init__()
        self.num_features, self.dropout = 2 * hidden, dropout
        # Positional encodings need an input projection to be added to; plain features go in raw.
        self.encoder = NodeEncoder(in_dim, hidden, lap_pe_dim, rw_se_dim, mag_pe_dim) \
            if lap_pe_dim or rw_se_dim or mag_pe_dim else None
        widths = [hidden if self.encoder is not None else in_dim] + [2 * hidden] * (num_layers - 1)
        self.layers = nn.ModuleList(TopMLayer(w, hidden, top_m, num_neighbors) for w in widths)

    def forward(self, batch: Batch) -> Tensor:
        h = self.encoder(batch) if self.encoder is not None else batch.x.float()
        graph = batch.batch if getattr(batch, "batch", None) is not None else h.new_zeros(h.shape[0], dtype=torch.long)
        for layer in self.layers:
            h = F.dropout(F.relu(layer(h, batch.edge_index, graph)), self.dropout, self.training)
        return h


@register("tangnn", task="graph", paper="E et al. 2024")
def tangnn(in_dim: int = 1, edge_dim: int = 0, lap_pe_dim: int = 0, rw_se_dim: int = 0, hidden: int = 32,
           num_layers: int = 2, top_m: int = 20, num_neighbors: int = 5, dropout: float = 0.3,
           mag_pe_dim: int = 0) -> TANGNN:
    """top_m: keys each node attends to (the m most similar nodes of its graph); num_neighbors:
    in-neighbours sampled per node and layer in training (0: all; eval always uses all). Defaults:
    the authors' Cora script (hidden 32, 2 layers, m=20, 5 sampled neighbours, dropout 0.3).
    edge_dim is accepted and ignored: TANGNN does not read edge features."""
    if top_m < 1:
        raise UserError(f"model.top_m={top_m} must be >= 1 (keys per node in the top-m attention). Fix: e.g. "
                        "model.top_m=20")
    if num_neighbors < 0:
        raise UserError(f"model.num_neighbors={num_neighbors} must be >= 0 (0: every neighbour)")
    if num_layers < 1:
        raise UserError(f"model.num_layers={num_layers} must be >= 1")
    return TANGNN(in_dim, hidden, num_layers, top_m, num_neighbors, dropout, lap_pe_dim, rw_se_dim, mag_pe_dim)
