"""GAT (Velickovic et al., ICLR 2018) with GATv2 scoring (Brody et al. 2022) as an option:
alpha_ij = softmax_j(a^T LeakyReLU(W [h_i || h_j || e_ij])), PyG's `GAT` stack.

`residual=true` puts the same attention layers (`heads` heads of hidden/heads channels,
concatenated back to hidden) into the pre-LayerNorm residual layers of Platonov et al. (ICLR
2023), as `gcn` does (common.PreNormResidual):

    h <- h + Dropout(GELU(GATConv(LayerNorm(h), e))),  then a final LayerNorm

which keeps deep stacks trainable (the 16 layers of the benchmarking-GNNs setups on PATTERN
and CLUSTER, Dwivedi et al. 2020). `dropout` also drops attention coefficients, as in PyG's stack.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.data import Batch
from torch_geometric.nn import GATConv, GATv2Conv
from torch_geometric.nn.models import GAT as PyGGAT

from labformer.models.graph.base import GraphBackbone
from labformer.models.graph.common import EdgeEncoder, NodeEncoder, PreNormResidual
from labformer.errors import UserError
from labformer.registry import register


class GAT(GraphBackbone):
    def __init__(self, in_dim: int, edge_dim: int, hidden: int, num_layers: int, heads: int, dropout: float,
                 in_dropout: float, v2: bool, norm: str | None, lap_pe_dim: int = 0, rw_se_dim: int = 0,
                 mag_pe_dim: int = 0):
        super().__init__()
        self.num_features = hidden
        self.in_dropout = in_dropout
        self.encoder = NodeEncoder(in_dim, hidden, lap_pe_dim, rw_se_dim, mag_pe_dim)
        self.edges = EdgeEncoder(edge_dim, hidden)
        self.gnn = PyGGAT(hidden, hidden, num_layers, dropout=dropout, heads=heads, v2=v2, norm=norm,
                          edge_dim=hidden if edge_dim else None)

    def forward(self, batch: Batch) -> torch.Tensor:
        h = F.dropout(self.encoder(batch), self.in_dropout, self.training)
        e = self.edges(batch)
        return self.gnn(h, batch.edge_index, edge_attr=e) if e is not None else self.gnn(h, batch.edge_index)


class ResidualGAT(PreNormResidual):
    def __init__(self, in_dim: int, edge_dim: int, hidden: int, num_layers: int, heads: int, dropout: float,
                 in_dropout: float, v2: bool, lap_pe_dim: int = 0, rw_se_dim: int = 0, mag_pe_dim: int = 0):
        encoder = NodeEncoder(in_dim, hidden, lap_pe_dim, rw_se_dim, mag_pe_dim)
        edges = EdgeEncoder(edge_dim, hidden)
        conv = GATv2Conv if v2 else GATConv
        convs = (conv(hidden, hidden // heads, heads=heads, concat=True, dropout=dropout,
                      edge_dim=hidden if edge_dim else None) for _ in range(num_layers))
        super().__init__(encoder, convs, hidden, dropout, in_dropout, edges)


@register("gat", task="graph", paper="Velickovic et al. 2018")
def gat(in_dim: int = 1, edge_dim: int = 0, lap_pe_dim: int = 0, rw_se_dim: int = 0, hidden: int = 64,
        num_layers: int = 2, heads: int = 8, dropout: float = 0.5, in_dropout: float = 0.0, v2: bool = False,
        norm: str | None = None, residual: bool = False, mag_pe_dim: int = 0) -> nn.Module:
    """v2: GATv2 scoring (Brody et al. 2022) instead of GAT's; norm: null | batch_norm | layer_norm
    between PyG's layers; residual: the pre-LayerNorm residual layers (module docstring), which
    bring their own LayerNorms (leave norm at null)."""
    if hidden % heads:
        raise UserError(f"model.hidden={hidden} must be divisible by model.heads={heads}: the heads' outputs "
                        f"are concatenated back to hidden. Fix: e.g. model.hidden={heads * max(1, hidden // heads)}")
    if residual:
        if norm is not None:
            raise UserError(f"model.residual=true has its own LayerNorms; model.norm={norm} would add a second "
                            "normalisation. Fix: model.norm=null")
        return ResidualGAT(in_dim, edge_dim, hidden, num_layers, heads, dropout, in_dropout, v2,
                           lap_pe_dim, rw_se_dim, mag_pe_dim)
    return GAT(in_dim, edge_dim, hidden, num_layers, heads, dropout, in_dropout, v2, norm, lap_pe_dim, rw_se_dim,
               mag_pe_dim)
