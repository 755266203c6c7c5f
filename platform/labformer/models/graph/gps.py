"""GPS (Rampasek et al., NeurIPS 2022) with PyG's `GPSConv`: each layer sums a local MPNN
(GINE) and global attention over all nodes of each graph - softmax multi-head
(O(N^2) per graph) or Performer's linear-time kernel attention:

    x = BN(x + Local(x)) + BN(x + Attn(x)),   x = BN(x + MLP(x))
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch_geometric.data import Batch
from torch_geometric.nn import GINEConv, GPSConv

from labformer.errors import UserError
from labformer.models.graph.base import GraphBackbone
from labformer.models.graph.common import EdgeEncoder, NodeEncoder
from labformer.registry import register


class GPS(GraphBackbone):
    def __init__(self, in_dim: int, edge_dim: int, hidden: int, num_layers: int, heads: int, dropout: float,
                 attn_dropout: float, attn_type: str, lap_pe_dim: int = 0, rw_se_dim: int = 0,
                 mag_pe_dim: int = 0):
        super().__init__()
        self.num_features = hidden
        self.encoder = NodeEncoder(in_dim, hidden, lap_pe_dim, rw_se_dim, mag_pe_dim)
        self.edges = EdgeEncoder(edge_dim, hidden)
        kwargs = {"dropout": attn_dropout} if attn_type == "multihead" else {}
        self.layers = nn.ModuleList(
            GPSConv(hidden, GINEConv(nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))),
                    heads=heads, dropout=dropout, attn_type=attn_type, attn_kwargs=kwargs)
            for _ in range(num_layers))

    def forward(self, batch: Batch) -> torch.Tensor:
        h = self.encoder(batch)
        e = self.edges(batch)
        if e is None:
            e = h.new_zeros(batch.edge_index.shape[1], h.shape[1])
        for layer in self.layers:
            h = layer(h, batch.edge_index, batch.batch, edge_attr=e)
        return h


@register("gps", task="graph", paper="Rampasek et al. 2022")
def gps(in_dim: int = 1, edge_dim: int = 0, lap_pe_dim: int = 0, rw_se_dim: int = 0, hidden: int = 64,
        num_layers: int = 4, heads: int = 4, dropout: float = 0.0, attn_dropout: float = 0.0,
        attn_type: str = "multihead", mag_pe_dim: int = 0) -> GPS:
    """attn_type: multihead (full softmax, O(N^2) per graph) | performer (linear-time kernel attention)."""
    if attn_type not in ("multihead", "performer"):
        raise UserError(f"model.attn_type={attn_type} is unknown: multihead (full softmax) | performer")
    if hidden % heads:
        raise UserError(f"model.hidden={hidden} must be divisible by model.heads={heads}")
    return GPS(in_dim, edge_dim, hidden, num_layers, heads, dropout, attn_dropout, attn_type, lap_pe_dim, rw_se_dim,
               mag_pe_dim)
