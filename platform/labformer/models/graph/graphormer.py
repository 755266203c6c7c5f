"""Graphormer (Ying et al., NeurIPS 2021): a dense transformer over each graph's nodes whose
attention scores carry structure:

    A_ij = (W_Q h_i)(W_K h_j)^T / sqrt(d) + b_{phi(i,j)} + c_ij,
    c_ij = 1/N sum_{n=1..N} x_{e_n} . w_n      (edge features along a shortest path e_1..e_N)

with phi the shortest-path distance (capped at `max_dist`; one bucket for farther or
unreachable) and a degree embedding added to the input (centrality encoding); pre-LN
layers. Distances and paths come from the `ShortestPaths` transform (cached per dataset).
Dense attention costs O(n^2) per graph: for small graphs (molecules, SBM).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.utils import degree, to_dense_batch

from labformer.data.graph.cache import CachedTransform
from labformer.errors import UserError
from labformer.models.graph.base import GraphBackbone
from labformer.models.graph.common import NodeEncoder
from labformer.registry import register


class ShortestPaths(CachedTransform):
    """`spd` [N*N] hop distances (row-major, capped at max_dist + 1 for 'farther or unreachable'),
    and with edge features `spd_edges` [N*N, max_dist * edge_dim]: the features of the edges along
    one shortest path, step by step (zero-padded). O(N^2) per graph: for small graphs."""

    name, adds = "spd", ("spd",)

    def __init__(self, max_dist: int = 5, edge_features: bool = False):
        self.max_dist, self.edge_features = max_dist, edge_features
        if edge_features:
            self.adds = ("spd", "spd_edges")

    @property
    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "max_dist": self.max_dist, "edge_features": self.edge_features}

    def forward(self, data: Data) -> Data:
        n, cap = data.num_nodes, self.max_dist + 1
        ei = data.edge_index.numpy()
        nbrs: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for e, (u, v) in enumerate(ei.T):
            nbrs[u].append((v, e))
        dist = np.full((n, n), cap, dtype=np.int64)
        via = np.full((n, n), -1, dtype=np.int64)  # the edge entering v on a BFS path from s
        parent = np.full((n, n), -1, dtype=np.int64)
        for s in range(n):
            dist[s, s], frontier, d = 0, [s], 0
            while frontier and d < self.max_dist:
                d += 1
                nxt = []
                for u in frontier:
                    for v, e in nbrs[u]:
                        if dist[s, v] == cap and v != s:
                            dist[s, v], via[s, v], parent[s, v] = d, e, u
                            nxt.append(v)
                frontier = nxt
        data.spd = torch.from_numpy(dist.reshape(-1))
        if self.edge_features:
            attr = data.edge_attr.float().view(data.edge_index.shape[1], -1)
            f = attr.shape[1]
            feats = torch.zeros(n, n, self.max_dist, f)
            for s in range(n):
                for t in range(n):
                    k, v = int(dist[s, t]), t
                    if k >= cap or k == 0:
                        continue
                    while v != s:  # walk back from t, filling steps k-1 .. 0
                        k -= 1
                        feats[s, t, k] = attr[via[s, v]]
                        v = int(parent[s, v])
            data.spd_edges = feats.view(n * n, self.max_dist * f)
        return data


class GraphormerLayer(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))

    def forward(self, h: Tensor, bias: Tensor) -> Tensor:
        b, n, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
        h = h + F.dropout(self.out(a.transpose(1, 2).reshape(b, n, d)), self.dropout, self.training)
        return h + F.dropout(self.ffn(self.norm2(h)), self.dropout, self.training)


class Graphormer(GraphBackbone):
    max_nodes = 256  # dense attention and all-pairs distances per graph: molecules and SBM graphs
    def __init__(self, in_dim: int, edge_dim: int, hidden: int, num_layers: int, heads: int, dropout: float,
                 max_dist: int, max_degree: int, lap_pe_dim: int = 0, rw_se_dim: int = 0,
                 mag_pe_dim: int = 0):
        super().__init__()
        self.num_features, self.heads, self.max_dist, self.max_degree = hidden, heads, max_dist, max_degree
        self.data_transform = ShortestPaths(max_dist, edge_features=edge_dim > 0)
        self.encoder = NodeEncoder(in_dim, hidden, lap_pe_dim, rw_se_dim, mag_pe_dim)
        self.degree = nn.Embedding(max_degree + 1, hidden)
        self.spd = nn.Embedding(max_dist + 2, heads)  # 0..max_dist, then "farther or unreachable"
        self.path = nn.Parameter(torch.randn(max_dist, edge_dim, heads) * 0.02) if edge_dim else None
        self.layers = nn.ModuleList(GraphormerLayer(hidden, heads, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden)

    def attention_bias(self, batch: Batch, sizes: Tensor, n_max: int) -> Tensor:
        """[B, heads, n_max, n_max]: spatial (+ edge) bias; -inf on padded keys."""
        pairs = sizes * sizes
        graph = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), pairs)
        local = torch.arange(int(pairs.sum()), device=sizes.device) - torch.repeat_interleave(
            pairs.cumsum(0) - pairs, pairs)
        row, col = local // sizes[graph], local % sizes[graph]
        spd = batch.spd
        values = self.spd(spd)  # [P, heads]
        if self.path is not None:
            steps = batch.spd_edges.view(len(spd), self.max_dist, -1)
            values = values + torch.einsum("pkf,kfh->ph", steps, self.path) / spd.clamp(1, self.max_dist)[:, None]
        bias = values.new_full((len(sizes), n_max, n_max, self.heads), float("-inf"))
        bias[graph, row, col] = values
        return bias.permute(0, 3, 1, 2)

    def forward(self, batch: Batch) -> Tensor:
        spd = getattr(batch, "spd", None)
        if spd is None:
            raise ValueError("graphormer: the batch has no spd; apply model.data_transform (ShortestPaths) to every "
                             "graph first - the graph task does this through the DataModule")
        n = batch.num_nodes
        graph = batch.batch if batch.batch is not None else batch.edge_index.new_zeros(n)
        deg = degree(batch.edge_index[1], n).long().clamp(max=self.max_degree)
        h = self.encoder(batch) + self.degree(deg)
        dense, mask = to_dense_batch(h, graph)
        bias = self.attention_bias(batch, mask.sum(1), dense.shape[1])
        for layer in self.layers:
            dense = layer(dense, bias)
        return self.norm(dense[mask])


@register("graphormer", task="graph", paper="Ying et al. 2021")
def graphormer(in_dim: int = 1, edge_dim: int = 0, lap_pe_dim: int = 0, rw_se_dim: int = 0, hidden: int = 64,
               num_layers: int = 4, heads: int = 4, dropout: float = 0.0, max_dist: int = 5,
               max_degree: int = 64, mag_pe_dim: int = 0) -> Graphormer:
    """max_dist: shortest-path buckets 0..max_dist, then one for farther or unreachable; max_degree: higher
    degrees share one embedding."""
    if hidden % heads:
        raise UserError(f"model.hidden={hidden} must be divisible by model.heads={heads}")
    return Graphormer(in_dim, edge_dim, hidden, num_layers, heads, dropout, max_dist, max_degree, lap_pe_dim, rw_se_dim,
                      mag_pe_dim)
