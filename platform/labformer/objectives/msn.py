"""MSN, Masked Siamese Networks (Assran et al. 2022).

An anchor view with a share of its patches masked goes through the online encoder and
projector; an unmasked target view goes through their EMA copies (no gradient). Both are
softly assigned to K learnable prototypes q (cosine similarity, temperature):

    p_anchor = softmax(<z_a, q> / tau),   p_target = softmax(<z_t, q> / tau_plus),  tau_plus < tau

The lower target temperature is the paper's sharpening: softmax(s / tau_plus) equals
sharpen(softmax(s / tau), T = tau_plus / tau) with sharpen(p, T) = p^(1/T) / sum p^(1/T).
Loss, symmetric over the two views, with the mean-entropy-maximisation regulariser:

    L = mean_i H(p_target_i, p_anchor_i) - lambda * H(mean_i p_anchor_i)

EMA after every optimiser step: theta_target <- m theta_target + (1 - m) theta_online.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.objectives.base import Objective
from labformer.objectives.heads import ema_update, frozen_copy, mlp
from labformer.registry import register


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp(min=1e-12))).sum(-1)


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    p = p ** (1.0 / temperature)
    return p / p.sum(-1, keepdim=True)


@register("msn", task="contrastive", kind="objective", paper="Assran et al. 2022, Masked Siamese Networks")
class MSN(Objective):
    def __init__(self, feature_dim: int, proj_dim: int = 128, proj_hidden: int = 512, num_prototypes: int = 256,
                 mask_ratio: float = 0.5, patch_size: int = 4, temperature: float = 0.1,
                 target_temperature: float = 0.025, me_max_weight: float = 1.0, momentum: float = 0.996) -> None:
        """num_prototypes: K (the paper: 1024 on ImageNet); mask_ratio: share of the anchor's patches dropped
        (ViT: tokens removed; other encoders: zeroed); patch_size: patch side for pixel masking on non-ViT
        encoders (ViTs use their own patches); temperature: the anchor's tau; target_temperature: tau_plus <
        tau, sharpening the targets; me_max_weight: lambda of the mean-entropy maximisation; momentum: of the
        EMA of the target encoder and projector."""
        super().__init__(feature_dim)
        self.projector = mlp(feature_dim, proj_hidden, proj_dim, layers=3)
        self.prototypes = nn.Parameter(F.normalize(torch.randn(num_prototypes, proj_dim), dim=-1))
        self.mask_ratio, self.patch_size = mask_ratio, patch_size
        self.temperature, self.target_temperature = temperature, target_temperature
        self.me_max_weight, self.momentum = me_max_weight, momentum
        self.target_encoder: nn.Module | None = None
        self.target_projector = frozen_copy(self.projector)

    def attach(self, encoder: nn.Module) -> None:
        self.target_encoder = frozen_copy(encoder)

    def assign(self, z: torch.Tensor, temperature: float) -> torch.Tensor:
        sim = F.normalize(z, dim=-1) @ F.normalize(self.prototypes, dim=-1).T
        return F.softmax(sim / temperature, dim=-1)

    def loss(self, encoder, batch):
        v1, v2 = batch["views"]
        anchors = torch.cat([encoder.forward_masked(v, self.mask_ratio, self.patch_size) for v in (v1, v2)])
        p_anchor = self.assign(self.projector(anchors), self.temperature)
        with torch.no_grad():
            targets = torch.cat([self.target_encoder(v) for v in (v2, v1)])  # each anchor's other view
            p_target = self.assign(self.target_projector(targets), self.target_temperature)
        cross = -(p_target * torch.log(p_anchor.clamp(min=1e-12))).sum(-1).mean()
        mean_entropy = entropy(p_anchor.mean(0))
        loss = cross - self.me_max_weight * mean_entropy
        return loss, {"mean_entropy": mean_entropy.detach(), "target_entropy": entropy(p_target).mean()}

    def after_step(self, encoder: nn.Module) -> None:
        ema_update(self.target_encoder, encoder, self.momentum)
        ema_update(self.target_projector, self.projector, self.momentum)
