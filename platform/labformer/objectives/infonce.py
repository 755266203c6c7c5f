"""InfoNCE / NT-Xent (SimCLR: Chen et al. 2020), the common contrastive baseline.

2N projected, l2-normalised views; for view i its positive is the other view of the same
item and the other 2N - 2 views are negatives:

    l(i) = -log exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau)

averaged over all 2N views.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from labformer.objectives.base import Objective
from labformer.objectives.heads import mlp
from labformer.registry import register


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))  # a view is not its own negative
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, positives)


@register("infonce", task="contrastive", kind="objective", paper="Chen et al. 2020, SimCLR (NT-Xent)")
class InfoNCE(Objective):
    def __init__(self, feature_dim: int, proj_dim: int = 128, proj_hidden: int = 512,
                 temperature: float = 0.5) -> None:
        """temperature: tau (0.5 is SimCLR's CIFAR-10 setting)."""
        super().__init__(feature_dim)
        self.projector = mlp(feature_dim, proj_hidden, proj_dim, layers=2)
        self.temperature = temperature

    def loss(self, encoder, batch):
        v1, v2 = batch["views"]
        z1, z2 = self.projector(encoder(v1)), self.projector(encoder(v2))
        return nt_xent(z1, z2, self.temperature), {}
