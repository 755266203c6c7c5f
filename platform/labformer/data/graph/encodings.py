"""Positional and structural encodings any graph model can ask for (`data.lap_pe_dim`, `data.rw_se_dim`).

- `LaplacianPE`   k smallest non-trivial Laplacian eigenvectors (PyG's transform; tiny
                  graphs are zero-padded to k columns). Their sign is arbitrary: the model
                  flips it at random during training.
- `RandomWalkSE`  landing probabilities of 1..steps-step random walks (PyG's transform).
"""
from __future__ import annotations

from typing import Any

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import AddLaplacianEigenvectorPE, AddRandomWalkPE

from labformer.data.graph.cache import CachedTransform


class LaplacianPE(CachedTransform):
    """`lap_pe` [N, k]: eigenvectors 2..k+1 of the symmetric normalised Laplacian."""

    name, adds = "lap_pe", ("lap_pe",)

    def __init__(self, k: int):
        self.k = k

    @property
    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "normalization": "sym"}

    def forward(self, data: Data) -> Data:
        n = data.num_nodes
        k = min(self.k, n - 2)  # eigsh/eigh need fewer eigenvectors than nodes
        pe = torch.zeros(n, self.k)
        if k >= 1:
            out = AddLaplacianEigenvectorPE(k, attr_name="_pe", is_undirected=True)(
                Data(edge_index=data.edge_index, num_nodes=n))
            pe[:, :k] = out._pe.float()
        data.lap_pe = pe
        return data


class RandomWalkSE(CachedTransform):
    """`rw_se` [N, steps]: probability that a random walk of 1..steps steps returns home."""

    name, adds = "rw_se", ("rw_se",)

    def __init__(self, steps: int):
        self.steps = steps

    @property
    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "steps": self.steps}

    def forward(self, data: Data) -> Data:
        out = AddRandomWalkPE(self.steps, attr_name="_se")(Data(edge_index=data.edge_index, num_nodes=data.num_nodes))
        data.rw_se = out._se.float()
        return data

