"""What every graph backbone shares: the input encoder (node features + positional /
structural encodings, edge features) and the `num_features` contract.

Every backbone maps `Batch -> node features [N, num_features]` and its builder takes the
data's `in_dim`, `edge_dim`, `lap_pe_dim`, `rw_se_dim` and `mag_pe_dim` (0: absent), as the
graph task passes them.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.data import Batch

from labformer.models.graph.base import GraphBackbone


class NodeEncoder(nn.Module):
    """h0 = W x + W_lap (s * lap_pe) + W_rw rw_se + W_mag mag_pe, with a random sign s = +-1 per
    graph and eigenvector while training (eigenvectors are defined up to sign; Dwivedi et al. 2020).
    mag_pe = [Re U, Im U] [N, 2 * mag_pe_dim] (data/graph/magnetic.py) enters as it is: its phase
    is fixed by a convention when it is computed, so no random rotation is needed."""

    def __init__(self, in_dim: int, hidden: int, lap_pe_dim: int = 0, rw_se_dim: int = 0, mag_pe_dim: int = 0):
        super().__init__()
        self.x = nn.Linear(in_dim, hidden)
        self.lap = nn.Linear(lap_pe_dim, hidden) if lap_pe_dim else None
        self.rw = nn.Linear(rw_se_dim, hidden) if rw_se_dim else None
        self.mag = nn.Linear(2 * mag_pe_dim, hidden) if mag_pe_dim else None

    def forward(self, batch: Batch) -> torch.Tensor:
        h = self.x(batch.x.float())
        if self.lap is not None:
            pe = batch.lap_pe
            if self.training:
                graph = batch.batch if batch.batch is not None else pe.new_zeros(pe.shape[0], dtype=torch.long)
                sign = torch.randint(0, 2, (int(graph.max()) + 1 if graph.numel() else 1, pe.shape[1]),
                                     device=pe.device) * 2 - 1
                pe = pe * sign[graph]
            h = h + self.lap(pe)
        if self.rw is not None:
            h = h + self.rw(batch.rw_se)
        if self.mag is not None:
            h = h + self.mag(batch.mag_pe)
        return h


class EdgeEncoder(nn.Module):
    """Edge features -> hidden (None when the data have none)."""

    def __init__(self, edge_dim: int, hidden: int):
        super().__init__()
        self.lin = nn.Linear(edge_dim, hidden) if edge_dim else None

    def forward(self, batch: Batch) -> torch.Tensor | None:
        if self.lin is None or getattr(batch, "edge_attr", None) is None:
            return None
        return self.lin(batch.edge_attr.float().view(batch.edge_index.shape[1], -1))


class PreNormResidual(GraphBackbone):
    """The residual layers of Platonov et al. (ICLR 2023), around any message-passing convolution:

        h_0 = Dropout_in(encoder(batch)),  h_{l+1} = h_l + Dropout(GELU(conv_l(LayerNorm_l(h_l), e))),
        output LayerNorm(h_L)

    with e the encoded edge features when `edges` has some (conv_l then takes them as `edge_attr`).
    The skip keeps each node's own features, which deep stacks and neighbours of other classes
    would otherwise wash out. A subclass builds the encoder and the convolutions (hidden -> hidden).
    """

    def __init__(self, encoder: NodeEncoder, convs: Iterable[nn.Module], hidden: int, dropout: float,
                 in_dropout: float, edges: EdgeEncoder | None = None):
        super().__init__()
        self.num_features, self.dropout, self.in_dropout = hidden, dropout, in_dropout
        self.encoder, self.edges = encoder, edges
        convs = list(convs)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in convs)
        self.convs = nn.ModuleList(convs)
        self.out_norm = nn.LayerNorm(hidden)

    def forward(self, batch: Batch) -> torch.Tensor:
        h = F.dropout(self.encoder(batch), self.in_dropout, self.training)
        e = self.edges(batch) if self.edges is not None else None
        for norm, conv in zip(self.norms, self.convs):
            x = conv(norm(h), batch.edge_index) if e is None else conv(norm(h), batch.edge_index, edge_attr=e)
            h = h + F.dropout(F.gelu(x), self.dropout, self.training)
        return self.out_norm(h)
