"""GCN (Kipf & Welling, ICLR 2017): H' = act(D^-1/2 (A+I) D^-1/2 H W), PyG's `GCN` stack.

`residual=true` is the variant of Platonov et al. (ICLR 2023) for heterophilous graphs: an
input projection, then per layer  h <- h + Dropout(GELU(GCNConv(LayerNorm(h)))),  then a final
LayerNorm (common.PreNormResidual, shared with gat). The skip keeps each node's own features,
which neighbours of other classes would otherwise wash out.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.data import Batch
from torch_geometric.nn import GCNConv
from torch_geometric.nn.models import GCN as PyGGCN

from labformer.errors import UserError
from labformer.models.graph.base import GraphBackbone
from labformer.models.graph.common import NodeEncoder, PreNormResidual
from labformer.registry import register


class GCN(GraphBackbone):
    def __init__(self, in_dim: int, hidden: int, num_layers: int, dropout: float, in_dropout: float,
                 norm: str | None, lap_pe_dim: int = 0, rw_se_dim: int = 0, out_dim: int | None = None,
                 mag_pe_dim: int = 0):
        super().__init__()
        self.num_features = out_dim or hidden
        self.in_dropout = in_dropout
        # Without encodings the first convolution reads the raw features, as in the paper
        # (an extra input projection costs Cora about 3 points of accuracy).
        self.encoder = NodeEncoder(in_dim, hidden, lap_pe_dim, rw_se_dim, mag_pe_dim) \
            if lap_pe_dim or rw_se_dim or mag_pe_dim else None
        # out_dim: the last convolution writes the class scores (the paper's model; with task.head=none).
        self.gnn = PyGGCN(hidden if self.encoder is not None else in_dim, hidden, num_layers, out_channels=out_dim,
                          dropout=dropout, norm=norm)

    def forward(self, batch: Batch) -> torch.Tensor:
        h = self.encoder(batch) if self.encoder is not None else batch.x.float()
        return self.gnn(F.dropout(h, self.in_dropout, self.training), batch.edge_index)


class ResidualGCN(PreNormResidual):
    def __init__(self, in_dim: int, hidden: int, num_layers: int, dropout: float, in_dropout: float,
                 lap_pe_dim: int = 0, rw_se_dim: int = 0, mag_pe_dim: int = 0):
        encoder = NodeEncoder(in_dim, hidden, lap_pe_dim, rw_se_dim, mag_pe_dim)
        super().__init__(encoder, (GCNConv(hidden, hidden) for _ in range(num_layers)), hidden, dropout, in_dropout)


@register("gcn", task="graph", paper="Kipf & Welling 2017")
def gcn(in_dim: int = 1, edge_dim: int = 0, lap_pe_dim: int = 0, rw_se_dim: int = 0, hidden: int = 64,
        num_layers: int = 2, dropout: float = 0.5, in_dropout: float = 0.0, norm: str | None = None,
        out_dim: int | None = None, residual: bool = False, mag_pe_dim: int = 0) -> nn.Module:
    """in_dropout: dropout on the encoded input features; norm: null | batch_norm | layer_norm (PyG norm names);
    out_dim: an int makes the last convolution output that many channels (the class scores, with task.head=none);
    residual: the pre-LayerNorm residual variant of Platonov et al. 2023 (see the module docstring).
    edge_dim is accepted and ignored: GCN does not read edge features."""
    if residual:
        if out_dim is not None or norm is not None:
            raise UserError("model.residual=true has its own LayerNorms and a linear head: leave model.norm "
                            "and model.out_dim at null")
        return ResidualGCN(in_dim, hidden, num_layers, dropout, in_dropout, lap_pe_dim, rw_se_dim, mag_pe_dim)
    return GCN(in_dim, hidden, num_layers, dropout, in_dropout, norm, lap_pe_dim, rw_se_dim, out_dim, mag_pe_dim)
