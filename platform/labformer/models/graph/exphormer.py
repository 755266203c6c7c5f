"""Exphormer (Shirzad et al., ICML 2023): sparse attention over an expander, virtual nodes
and the graph, as the global layer of a GPS-style layer.

Every node i attends over the union of three edge sets, never over all pairs:
(a) the graph's edges, (b) a fixed random d-regular expander (`ExpanderEdges`: the union
of d/2 random permutations, or of d/2 random Hamiltonian cycles), (c) `num_virtual`
virtual nodes per graph, joined to every node of their graph in both directions. Each
edge kind has a learned embedding (graph edges add their encoded features), which scales
the key:

    e_ij = W_E (kind_ij [+ edge features_ij])
    a_ij = softmax_{j in N(i)} ( <q_i, k_j * e_ij> / sqrt(d_head) ),   out_i = W_O sum_j a_ij v_j

with q = W_Q x, k = W_K x, v = W_V x per head. Cost O(N d + N V + E) per layer.
A layer (Rampasek et al. 2022, GPS) adds a local MPNN (GINE) beside it:

    x = BN(x + Local(x)) + BN(x + Attn(x)),   x = BN(x + FFN(x))

The expander is built once per graph by the data side (the builders hand `data_transform`
to the DataModule, which caches it); virtual-node edges depend only on the batch vector
and are built here.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GINEConv, MessagePassing
from torch_geometric.utils import softmax

from labformer.data.graph.cache import CachedTransform
from labformer.errors import UserError
from labformer.models.graph.base import GraphBackbone
from labformer.models.graph.common import EdgeEncoder, NodeEncoder
from labformer.registry import register

GRAPH, EXPANDER, TO_VIRTUAL, FROM_VIRTUAL = range(4)  # edge kinds


# -- the expander: built once per graph on the data side (cached with the dataset) -------------
def random_regular_edges(n: int, degree: int, rng: np.random.RandomState, method: str = "permutation") -> np.ndarray:
    """[2, n*degree] directed edges of a random `degree`-regular graph on n nodes (both directions).

    permutation: the union of degree/2 random permutations i -> pi(i), each used in both
      directions (Friedman: such graphs are near-Ramanujan with high probability).
    hamiltonian: the union of degree/2 random Hamiltonian cycles; connected by construction.
    Either may hold self-loops or repeated edges, as in the paper's construction.
    """
    if degree % 2:
        raise ValueError(f"expander degree must be even, got {degree}")
    if n < 2 or degree == 0:
        return np.zeros((2, 0), dtype=np.int64)
    src, dst = [], []
    for _ in range(degree // 2):
        perm = rng.permutation(n)
        if method == "permutation":
            a, b = np.arange(n), perm
        elif method == "hamiltonian":
            a, b = perm, np.roll(perm, -1)
        else:
            raise ValueError(f"unknown expander method '{method}' (permutation | hamiltonian)")
        src += [a, b]
        dst += [b, a]
    return np.stack([np.concatenate(src), np.concatenate(dst)]).astype(np.int64)


class ExpanderEdges(CachedTransform):
    """`expander_index` [2, N*degree]: a fixed random expander per graph (seeded by its order)."""

    name, adds = "expander", ("expander_index",)

    def __init__(self, degree: int = 4, method: str = "permutation", seed: int = 0):
        self.degree, self.method, self.seed = degree, method, seed
        self._rng = np.random.RandomState(seed)

    @property
    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "degree": self.degree, "method": self.method, "seed": self.seed}

    def forward(self, data: Data) -> Data:
        data.expander_index = torch.from_numpy(random_regular_edges(data.num_nodes, self.degree, self._rng,
                                                                    self.method))
        return data



class ExphormerAttention(MessagePassing):
    """Multi-head attention restricted to `edge_index` (source j -> target i), edge-scaled keys."""

    def __init__(self, dim: int, heads: int, attn_dropout: float = 0.0):
        super().__init__(aggr="add", node_dim=0)
        if dim % heads:
            raise ValueError(f"model.hidden={dim} must be divisible by model.heads={heads}")
        self.heads, self.head_dim, self.attn_dropout = heads, dim // heads, attn_dropout
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.e = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self._alpha: Tensor | None = None

    def reset_parameters(self) -> None:
        for lin in (self.q, self.k, self.v, self.e, self.out):
            lin.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_emb: Tensor,
                return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        shape = (-1, self.heads, self.head_dim)
        out = self.propagate(edge_index, q=self.q(x).view(shape), k=self.k(x).view(shape), v=self.v(x).view(shape),
                             e=self.e(edge_emb).view(shape), size=(x.shape[0], x.shape[0]))
        out = self.out(out.reshape(x.shape[0], -1))
        alpha, self._alpha = self._alpha, None
        return (out, alpha) if return_attention else out

    def message(self, q_i: Tensor, k_j: Tensor, v_j: Tensor, e: Tensor, index: Tensor, ptr: Tensor | None,
                size_i: int | None) -> Tensor:
        score = (q_i * k_j * e).sum(-1) / math.sqrt(self.head_dim)  # [E, heads]
        alpha = softmax(score, index, ptr, size_i)
        self._alpha = alpha.detach()
        alpha = F.dropout(alpha, self.attn_dropout, self.training)
        return v_j * alpha.unsqueeze(-1)


class ExphormerLayer(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, attn_dropout: float, local: bool):
        super().__init__()
        self.dropout = dropout
        self.local = GINEConv(nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))) if local else None
        self.norm_local = nn.BatchNorm1d(dim) if local else None
        self.attn = ExphormerAttention(dim, heads, attn_dropout)
        self.norm_attn = nn.BatchNorm1d(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.norm_ffn = nn.BatchNorm1d(dim)

    def forward(self, x: Tensor, edge_index: Tensor, edge_feat: Tensor, attn_index: Tensor, attn_emb: Tensor,
                return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        a, alpha = self.attn(x, attn_index, attn_emb, return_attention=True)
        h = self.norm_attn(x + F.dropout(a, self.dropout, self.training))
        if self.local is not None:
            h = h + self.norm_local(x + F.dropout(self.local(x, edge_index, edge_feat), self.dropout, self.training))
        h = self.norm_ffn(h + self.ffn(h))
        return (h, alpha) if return_attention else h


class Exphormer(GraphBackbone):
    def __init__(self, in_dim: int, edge_dim: int, hidden: int, num_layers: int, heads: int, dropout: float,
                 attn_dropout: float, expander_degree: int, expander_method: str, num_virtual: int, local: bool,
                 seed: int, lap_pe_dim: int = 0, rw_se_dim: int = 0, mag_pe_dim: int = 0):
        super().__init__()
        self.num_features, self.num_virtual = hidden, num_virtual
        self.data_transform = ExpanderEdges(expander_degree, expander_method, seed) if expander_degree else None
        self.encoder = NodeEncoder(in_dim, hidden, lap_pe_dim, rw_se_dim, mag_pe_dim)
        self.edges = EdgeEncoder(edge_dim, hidden)
        self.kinds = nn.Embedding(4, hidden)
        self.virtual = nn.Embedding(max(num_virtual, 1), hidden)
        self.layers = nn.ModuleList(ExphormerLayer(hidden, heads, dropout, attn_dropout, local)
                                    for _ in range(num_layers))

    def attention_edges(self, batch: Batch, edge_feat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(edge_index over real + virtual nodes, kind per edge, embedding per edge)."""
        n, device = batch.num_nodes, batch.edge_index.device
        parts, kinds = [batch.edge_index], [torch.full((batch.edge_index.shape[1],), GRAPH, device=device)]
        if self.data_transform is not None:
            expander = getattr(batch, "expander_index", None)
            if expander is None:
                raise ValueError("exphormer: the batch has no expander_index; apply model.data_transform "
                                 "(ExpanderEdges) to every graph first - the graph task does this through "
                                 "the DataModule")
            parts.append(expander)
            kinds.append(torch.full((expander.shape[1],), EXPANDER, device=device))
        if self.num_virtual:
            graph = batch.batch if batch.batch is not None else torch.zeros(n, dtype=torch.long, device=device)
            real = torch.arange(n, device=device).repeat_interleave(self.num_virtual)
            virtual = n + (graph[:, None] * self.num_virtual + torch.arange(self.num_virtual, device=device)).view(-1)
            parts += [torch.stack([virtual, real]), torch.stack([real, virtual])]
            kinds += [torch.full_like(real, TO_VIRTUAL), torch.full_like(real, FROM_VIRTUAL)]
        index, kind = torch.cat(parts, 1), torch.cat(kinds)
        emb = self.kinds(kind)
        e = edge_feat.shape[0]
        return index, kind, torch.cat([emb[:e] + edge_feat, emb[e:]])

    def forward(self, batch: Batch, return_attention: bool = False) -> Tensor | tuple[Tensor, list]:
        h = self.encoder(batch)
        n = h.shape[0]
        edge_feat = self.edges(batch)
        if edge_feat is None:
            edge_feat = h.new_zeros(batch.edge_index.shape[1], h.shape[1])
        index, kind, emb = self.attention_edges(batch, edge_feat)
        if self.num_virtual:
            h = torch.cat([h, self.virtual.weight.repeat(int(batch.num_graphs), 1)])
        attention = []
        for layer in self.layers:
            h, alpha = layer(h, batch.edge_index, edge_feat, index, emb, return_attention=True)
            attention.append(alpha)
        out = h[:n]
        return (out, [(index, kind, a) for a in attention]) if return_attention else out


@register("exphormer", task="graph", paper="Shirzad et al. 2023")
def exphormer(in_dim: int = 1, edge_dim: int = 0, lap_pe_dim: int = 0, rw_se_dim: int = 0, hidden: int = 64,
              num_layers: int = 4, heads: int = 4, dropout: float = 0.0, attn_dropout: float = 0.0,
              expander_degree: int = 4, expander_method: str = "permutation", num_virtual: int = 1,
              local: bool = True, seed: int = 0, mag_pe_dim: int = 0) -> Exphormer:
    """expander_degree: even, 0 for no expander edges; expander_method: permutation (d/2 random
    permutations) | hamiltonian (d/2 random Hamiltonian cycles); num_virtual: virtual nodes per
    graph joined to every node (0: none); local: GINE beside the attention (GPS layer), false for
    attention only; seed: of the expander graphs (part of their cache key)."""
    if expander_method not in ("permutation", "hamiltonian"):
        raise UserError(f"model.expander_method={expander_method} is unknown: use permutation or hamiltonian")
    if hidden % heads or expander_degree % 2 or expander_degree < 0 or num_virtual < 0:
        raise UserError(f"exphormer needs hidden divisible by heads (got {hidden}, {heads}), an even "
                        f"expander_degree >= 0 (got {expander_degree}) and num_virtual >= 0 (got {num_virtual})")
    return Exphormer(in_dim, edge_dim, hidden, num_layers, heads, dropout, attn_dropout, expander_degree,
                     expander_method, num_virtual, local, seed, lap_pe_dim, rw_se_dim, mag_pe_dim)
