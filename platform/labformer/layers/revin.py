"""Reversible instance normalisation (RevIN, Kim et al. ICLR 2022).

    normalise:   x_hat = (x - mean_c) / sqrt(var_c + eps) * gamma_c + beta_c
    denormalise: y = (y_hat - beta_c) / (gamma_c + eps^2) * sqrt(var_c + eps) + mean_c

Statistics are per sample and per channel over the lookback (time axis 1 of [B,L,C]);
the forecast [B,H,C] is mapped back with the same statistics, so a model sees level-
and scale-free inputs while its outputs keep the series' level (distribution shift
between train and test windows is the reason forecasters use it).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class RevIN(nn.Module):
    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_channels, self.eps, self.affine = num_channels, eps, affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_channels))
            self.bias = nn.Parameter(torch.zeros(num_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x [B,L,C] -> (normalised x, (mean, std)); pass the stats to `denormalize`.

        The statistics are detached: gradients flow through the scaling, not into it
        (as in the reference implementation), which keeps the inverse exact.
        """
        mean = x.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        z = (x - mean) / std
        if self.affine:
            z = z * self.weight + self.bias
        return z, (mean, std)

    def denormalize(self, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """y [B,H,C] in normalised units -> the series' units."""
        mean, std = stats
        if self.affine:
            y = (y - self.bias) / (self.weight + self.eps * self.eps)
        return y * std + mean

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, affine={self.affine}"
