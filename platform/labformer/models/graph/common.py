"""What every graph backbone shares: the input encoder (node features + positional /
structural encodings, edge features) and the `num_features` contract.

Every backbone maps `Batch -> node features [N, num_features]` and its builder takes the
data's `in_dim`, `edge_dim`, `lap_pe_dim` and `rw_se_dim` (0: absent), as the graph task
passes them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch_geometric.data import Batch


class NodeEncoder(nn.Module):
    """h0 = W x + W_lap (s * lap_pe) + W_rw rw_se, with a random sign s = +-1 per graph and
    eigenvector while training (eigenvectors are defined up to sign; Dwivedi et al. 2020)."""

    def __init__(self, in_dim: int, hidden: int, lap_pe_dim: int = 0, rw_se_dim: int = 0):
        super().__init__()
        self.x = nn.Linear(in_dim, hidden)
        self.lap = nn.Linear(lap_pe_dim, hidden) if lap_pe_dim else None
        self.rw = nn.Linear(rw_se_dim, hidden) if rw_se_dim else None

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
