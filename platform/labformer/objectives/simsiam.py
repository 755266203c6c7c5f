"""SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning").

Both views pass the same encoder f and projector g: z = g(f(x)); a predictor h maps one
branch onto the other: p = h(z). Loss (their Eq. 1-2), with D the negative cosine:

    L = D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2

No negatives and no momentum encoder: the stop-gradient alone prevents collapse.
Projector: 3 layers with BN after every layer (no ReLU after the last); predictor: a
2-layer bottleneck (hidden = dim / 4 in the paper) with no BN on its output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from labformer.objectives.base import Objective
from labformer.objectives.heads import mlp
from labformer.registry import register


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) with the stop-gradient on z: gradient flows into p only."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


@register("simsiam", task="contrastive", kind="objective", paper="Chen & He 2021, SimSiam")
class SimSiam(Objective):
    def __init__(self, feature_dim: int, proj_dim: int = 512, pred_hidden: int = 128,
                 proj_layers: int = 3) -> None:
        """proj_dim: projector width and output (the paper: 2048 on ImageNet); pred_hidden: predictor bottleneck
        (the paper: a quarter of proj_dim); proj_layers: the paper uses 3 on ImageNet, 2 on CIFAR."""
        super().__init__(feature_dim)
        self.projector = mlp(feature_dim, proj_dim, proj_dim, layers=proj_layers, last_bn=True)
        self.predictor = mlp(proj_dim, pred_hidden, proj_dim, layers=2)

    def loss(self, encoder, batch):
        v1, v2 = batch["views"]
        z1, z2 = self.projector(encoder(v1)), self.projector(encoder(v2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2
        # The paper's collapse signal: std of the l2-normalised z, ~1/sqrt(d) when healthy, 0 collapsed.
        return loss, {"z_std": F.normalize(z1.detach(), dim=-1).std(0).mean()}
