"""SAMformer (Ilbert et al. ICML 2024, "SAMformer: Unlocking the Potential of Transformers in
Time Series Forecasting with Sharpness-Aware Minimization and Channel-Wise Attention").

One attention layer over channels (each channel's lookback is a token), a residual, and a
linear forecaster, inside RevIN:

    X' = X + softmax(X W_Q (X W_K)^T / sqrt(d)) X W_V      (X: [C, L] per sample)
    Y  = X' W_F                                             (L -> H)

Trained with SAM (`task.sam_rho`, the paper's key ingredient): without it this shallow
transformer's attention collapses into a sharp, poorly generalising minimum.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.layers.revin import RevIN
from labformer.registry import register


@register("samformer", task="timeseries", paper="Ilbert et al. ICML 2024", wants_sam=True)
class SAMformer(nn.Module):
    def __init__(self, lookback: int, horizon: int, channels: int, hidden_dim: int = 16, use_revin: bool = True):
        """hidden_dim: query/key width (values keep the lookback length); use_revin: reversible instance
        normalisation around the model."""
        super().__init__()
        self.revin = RevIN(channels) if use_revin else None
        self.query = nn.Linear(lookback, hidden_dim)
        self.key = nn.Linear(lookback, hidden_dim)
        self.value = nn.Linear(lookback, lookback)
        self.forecast = nn.Linear(lookback, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,L,C] -> [B,H,C]
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        tokens = x.transpose(1, 2)  # [B,C,L]: attention mixes channels
        mixed = F.scaled_dot_product_attention(self.query(tokens), self.key(tokens), self.value(tokens))
        y = self.forecast(tokens + mixed).transpose(1, 2)
        return self.revin.denormalize(y, stats) if self.revin is not None else y
