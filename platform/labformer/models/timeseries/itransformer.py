"""iTransformer (Liu et al. ICLR 2024, "Inverted Transformers Are Effective for Time Series Forecasting").

Each variate's whole lookback is one token: attention mixes variates, the MLP works along
time inside each token.

    z_c = W_e x[:, c] + b_e                 (x[:, c] in R^L, one token per channel)
    Z   = Encoder(z_1, ..., z_C)            (self-attention over the C variate tokens)
    y_c = W_p Z_c + b_p                     (token -> horizon H)

with instance normalisation (the paper's series stationarisation: per-window mean/std,
undone on the forecast). The paper's optional timestamp tokens are not used: the family's
backbones see values only. `model.attention` swaps the variate attention for a registered
variant (e.g. `model.attention=group`); the default keeps the built-in SDPA layer unchanged.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from labformer.layers.revin import RevIN
from labformer.models.timeseries.blocks import EncoderLayer
from labformer.models.timeseries.transformer import use_attention
from labformer.registry import register


@register("itransformer", task="timeseries", paper="Liu et al. ICLR 2024")
class ITransformer(nn.Module):
    def __init__(self, lookback: int, horizon: int, channels: int, dim: int = 128, depth: int = 2,
                 num_heads: int = 8, ffn_dim: int = 128, dropout: float = 0.1, use_norm: bool = True,
                 attention: str = "softmax", attention_kwargs: dict[str, Any] | None = None) -> None:
        """dim: token width (the paper uses 128-512); depth: encoder layers; ffn_dim: MLP hidden width;
        use_norm: per-window instance normalisation of the input, undone on the forecast; attention: the
        token mixer over the C variate tokens, a registered attention variant (softmax | group | performer
        | ...); attention_kwargs: its options, e.g. model.attention_kwargs='{groups: 8}' for group."""
        super().__init__()
        self.norm = RevIN(channels, affine=False) if use_norm else None
        self.embed = nn.Sequential(nn.Linear(lookback, dim), nn.Dropout(dropout))
        self.layers = nn.ModuleList(EncoderLayer(dim, num_heads, ffn_dim, dropout) for _ in range(depth))
        use_attention(self.layers, attention, attention_kwargs, dim=dim, num_heads=num_heads, max_len=channels,
                      dropout=dropout)
        self.final_norm = nn.LayerNorm(dim)
        self.project = nn.Linear(dim, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,L,C] -> [B,H,C]
        if self.norm is not None:
            x, stats = self.norm.normalize(x)
        tokens = self.embed(x.transpose(1, 2))  # [B,C,D]
        for layer in self.layers:
            tokens = layer(tokens)
        y = self.project(self.final_norm(tokens)).transpose(1, 2)
        return self.norm.denormalize(y, stats) if self.norm is not None else y
