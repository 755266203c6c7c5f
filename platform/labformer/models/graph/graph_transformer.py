"""Graph Transformer (Dwivedi & Bresson, 2021), with edge features: attention restricted to
each node's neighbours, Laplacian PE at the input, BatchNorm, and an edge stream.

    w_ij = (Q h_i * K h_j / sqrt(d)) * E e_ij            (per channel)
    a_ij = softmax_j(sum_channels w_ij),   h_i' = O_h sum_j a_ij V h_j,   e_ij' = O_e w_ij
    h = BN(h + h'),  h = BN(h + FFN(h));   e = BN(e + e'),  e = BN(e + FFN_e(e))
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import softmax

from labformer.errors import UserError
from labformer.models.graph.base import GraphBackbone
from labformer.models.graph.common import EdgeEncoder, NodeEncoder
from labformer.registry import register


def ffn(dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))


class GTLayer(MessagePassing):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__(aggr="add", node_dim=0)
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.q, self.k, self.v, self.e = (nn.Linear(dim, dim) for _ in range(4))
        self.o_h, self.o_e = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.bn_h1, self.bn_h2, self.bn_e1, self.bn_e2 = (nn.BatchNorm1d(dim) for _ in range(4))
        self.ffn_h, self.ffn_e = ffn(dim, dropout), ffn(dim, dropout)
        self._w: Tensor | None = None

    def forward(self, h: Tensor, edge_index: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        shape = (-1, self.heads, self.head_dim)
        out = self.propagate(edge_index, q=self.q(h).view(shape), k=self.k(h).view(shape), v=self.v(h).view(shape),
                             e=self.e(e).view(shape), size=(h.shape[0], h.shape[0]))
        w, self._w = self._w, None
        h = self.bn_h1(h + F.dropout(self.o_h(out.reshape(h.shape[0], -1)), self.dropout, self.training))
        h = self.bn_h2(h + self.ffn_h(h))
        e = self.bn_e1(e + F.dropout(self.o_e(w.reshape(e.shape[0], -1)), self.dropout, self.training))
        e = self.bn_e2(e + self.ffn_e(e))
        return h, e

    def message(self, q_i: Tensor, k_j: Tensor, v_j: Tensor, e: Tensor, index: Tensor, ptr: Tensor | None,
                size_i: int | None) -> Tensor:
        w = q_i * k_j / math.sqrt(self.head_dim) * e  # [E, heads, head_dim]
        self._w = w
        alpha = softmax(w.sum(-1).clamp(-5, 5), index, ptr, size_i)  # clamp as the paper's code, for stability
        return v_j * F.dropout(alpha, self.dropout, self.training).unsqueeze(-1)


class GraphTransformer(GraphBackbone):
    def __init__(self, in_dim: int, edge_dim: int, hidden: int, num_layers: int, heads: int, dropout: float,
                 lap_pe_dim: int = 0, rw_se_dim: int = 0, mag_pe_dim: int = 0):
        super().__init__()
        self.num_features = hidden
        self.encoder = NodeEncoder(in_dim, hidden, lap_pe_dim, rw_se_dim, mag_pe_dim)
        self.edges = EdgeEncoder(edge_dim, hidden)
        self.no_edge = nn.Parameter(torch.zeros(hidden))  # the edge state when the data have no edge features
        self.layers = nn.ModuleList(GTLayer(hidden, heads, dropout) for _ in range(num_layers))

    def forward(self, batch: Batch) -> Tensor:
        h = self.encoder(batch)
        e = self.edges(batch)
        if e is None:
            e = self.no_edge.expand(batch.edge_index.shape[1], -1)
        for layer in self.layers:
            h, e = layer(h, batch.edge_index, e)
        return h


@register("graph_transformer", task="graph", paper="Dwivedi & Bresson 2021")
def graph_transformer(in_dim: int = 1, edge_dim: int = 0, lap_pe_dim: int = 0, rw_se_dim: int = 0, hidden: int = 64,
                      num_layers: int = 4, heads: int = 4, dropout: float = 0.0,
                      mag_pe_dim: int = 0) -> GraphTransformer:
    if hidden % heads:
        raise UserError(f"model.hidden={hidden} must be divisible by model.heads={heads}")
    return GraphTransformer(in_dim, edge_dim, hidden, num_layers, heads, dropout, lap_pe_dim, rw_se_dim, mag_pe_dim)
