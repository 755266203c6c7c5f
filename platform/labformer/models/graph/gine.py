"""GINE (Hu et al., ICLR 2020): h_i' = MLP((1+eps) h_i + sum_j ReLU(h_j + e_ij)), with an
optional virtual node (Gilmer et al. 2017): one extra state per graph, updated from the
graph's pooled nodes and added back to every node after each layer."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.data import Batch
from torch_geometric.nn import GINEConv, global_add_pool

from labformer.models.graph.base import GraphBackbone
from labformer.models.graph.common import EdgeEncoder, NodeEncoder
from labformer.registry import register


def mlp(dim: int, out: int | None = None) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.ReLU(), nn.Linear(dim, out or dim))


class GINE(GraphBackbone):
    def __init__(self, in_dim: int, edge_dim: int, hidden: int, num_layers: int, dropout: float,
                 virtual_node: bool, lap_pe_dim: int = 0, rw_se_dim: int = 0, mag_pe_dim: int = 0):
        super().__init__()
        self.num_features, self.dropout = hidden, dropout
        self.encoder = NodeEncoder(in_dim, hidden, lap_pe_dim, rw_se_dim, mag_pe_dim)
        self.edges = EdgeEncoder(edge_dim, hidden)
        self.convs = nn.ModuleList(GINEConv(mlp(hidden), train_eps=True) for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(num_layers))
        self.virtual = nn.Embedding(1, hidden) if virtual_node else None
        self.virtual_mlps = nn.ModuleList(mlp(hidden) for _ in range(num_layers - 1)) if virtual_node else None
        if self.virtual is not None:
            nn.init.zeros_(self.virtual.weight)

    def forward(self, batch: Batch) -> torch.Tensor:
        h = self.encoder(batch)
        e = self.edges(batch)
        if e is None:  # GINE needs edge features: without any, every edge adds zero
            e = h.new_zeros(batch.edge_index.shape[1], h.shape[1])
        graph = batch.batch if batch.batch is not None else h.new_zeros(h.shape[0], dtype=torch.long)
        vn = self.virtual.weight.expand(int(batch.num_graphs), -1) if self.virtual is not None else None
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            if vn is not None:
                h = h + vn[graph]
            out = norm(conv(h, batch.edge_index, e))
            out = F.relu(out) if i < len(self.convs) - 1 else out
            h = h + F.dropout(out, self.dropout, self.training)  # residual
            if vn is not None and i < len(self.convs) - 1:
                vn = vn + F.dropout(self.virtual_mlps[i](global_add_pool(h, graph, size=vn.shape[0]) + vn),
                                    self.dropout, self.training)
        return h


@register("gine", task="graph", paper="Hu et al. 2020")
def gine(in_dim: int = 1, edge_dim: int = 0, lap_pe_dim: int = 0, rw_se_dim: int = 0, hidden: int = 64,
         num_layers: int = 4, dropout: float = 0.0, virtual_node: bool = False,
         mag_pe_dim: int = 0) -> GINE:
    """Residual GINE layers with BatchNorm; virtual_node: one virtual node per graph, updated after each layer."""
    return GINE(in_dim, edge_dim, hidden, num_layers, dropout, virtual_node, lap_pe_dim, rw_se_dim, mag_pe_dim)
