"""GAT (Velickovic et al., ICLR 2018) with GATv2 scoring (Brody et al. 2022) as an option:
alpha_ij = softmax_j(a^T LeakyReLU(W [h_i || h_j || e_ij])), PyG's `GAT` stack."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch_geometric.data import Batch
from torch_geometric.nn.models import GAT as PyGGAT

from labformer.models.graph.base import GraphBackbone
from labformer.models.graph.common import EdgeEncoder, NodeEncoder
from labformer.errors import UserError
from labformer.registry import register


class GAT(GraphBackbone):
    def __init__(self, in_dim: int, edge_dim: int, hidden: int, num_layers: int, heads: int, dropout: float,
                 in_dropout: float, v2: bool, norm: str | None, lap_pe_dim: int = 0, rw_se_dim: int = 0):
        super().__init__()
        if hidden % heads:
            raise UserError(f"model.hidden={hidden} must be divisible by model.heads={heads}")
        self.num_features = hidden
        self.in_dropout = in_dropout
        self.encoder = NodeEncoder(in_dim, hidden, lap_pe_dim, rw_se_dim)
        self.edges = EdgeEncoder(edge_dim, hidden)
        self.gnn = PyGGAT(hidden, hidden, num_layers, dropout=dropout, heads=heads, v2=v2, norm=norm,
                          edge_dim=hidden if edge_dim else None)

    def forward(self, batch: Batch) -> torch.Tensor:
        h = F.dropout(self.encoder(batch), self.in_dropout, self.training)
        e = self.edges(batch)
        return self.gnn(h, batch.edge_index, edge_attr=e) if e is not None else self.gnn(h, batch.edge_index)


@register("gat", task="graph", paper="Velickovic et al. 2018")
def gat(in_dim: int = 1, edge_dim: int = 0, lap_pe_dim: int = 0, rw_se_dim: int = 0, hidden: int = 64,
        num_layers: int = 2, heads: int = 8, dropout: float = 0.5, in_dropout: float = 0.0, v2: bool = False,
        norm: str | None = None) -> GAT:
    """v2: GATv2 scoring (Brody et al. 2022) instead of GAT's."""
    return GAT(in_dim, edge_dim, hidden, num_layers, heads, dropout, in_dropout, v2, norm, lap_pe_dim, rw_se_dim)
