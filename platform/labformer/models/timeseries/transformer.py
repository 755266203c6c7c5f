"""A vanilla transformer-encoder forecaster: the baseline the other designs are measured against.

Time steps are tokens (all channels of one step embedded together), sinusoidal positions,
post-norm encoder, then a linear map over time (L -> H) and one back to the channels:

    Z = Encoder(W_in x_t + PE_t),  y = W_out (Z^T W_time)^T

`model.attention` swaps the encoder's self-attention for a registered attention variant
(`model.attention=group`, options in `model.attention_kwargs`); the default keeps the
built-in SDPA layer, so default runs and their checkpoints are unchanged.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from labformer.errors import UserError
from labformer.layers.attention.base import build_attention
from labformer.layers.revin import RevIN
from labformer.models.timeseries.blocks import EncoderLayer
from labformer.registry import register


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe


def use_attention(layers: nn.ModuleList, attention: str, attention_kwargs: dict[str, Any] | None, *, dim: int,
                  num_heads: int, max_len: int, dropout: float) -> None:
    """Replace each EncoderLayer's attention by registry variant `attention` (over at most max_len tokens).

    "softmax" keeps the layer's own SDPA module (parameter names `attn.qkv`/`attn.proj`), so the default
    stays bit-identical to the backbone before this setting existed and old checkpoints load."""
    if attention == "softmax":
        if attention_kwargs:
            raise UserError(f"model.attention_kwargs={dict(attention_kwargs)} has no effect with "
                            f"model.attention=softmax (the built-in layer takes no options). Fix: drop "
                            f"model.attention_kwargs, or pick a variant that takes them, e.g. model.attention=group")
        return
    for layer in layers:
        layer.attn = build_attention(attention, dim=dim, num_heads=num_heads, causal=False, max_len=max_len,
                                     dropout=dropout, **(attention_kwargs or {}))


@register("transformer", task="timeseries", paper="Vaswani et al. 2017 (encoder only)")
class TransformerForecaster(nn.Module):
    def __init__(self, lookback: int, horizon: int, channels: int, dim: int = 128, depth: int = 2,
                 num_heads: int = 8, ffn_dim: int = 256, dropout: float = 0.1, use_revin: bool = True,
                 attention: str = "softmax", attention_kwargs: dict[str, Any] | None = None) -> None:
        """attention: the encoder's token mixer over the L time-step tokens, a registered attention variant
        (softmax | group | linformer | performer | ...); attention_kwargs: its options, e.g.
        model.attention_kwargs='{groups: 16}' for group."""
        super().__init__()
        self.revin = RevIN(channels) if use_revin else None
        self.embed = nn.Linear(channels, dim)
        self.register_buffer("pos", sinusoidal_positions(lookback, dim), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(dim, num_heads, ffn_dim, dropout) for _ in range(depth))
        use_attention(self.layers, attention, attention_kwargs, dim=dim, num_heads=num_heads, max_len=lookback,
                      dropout=dropout)
        self.over_time = nn.Linear(lookback, horizon)
        self.out = nn.Linear(dim, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,L,C] -> [B,H,C]
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        z = self.drop(self.embed(x) + self.pos)
        for layer in self.layers:
            z = layer(z)
        y = self.out(self.over_time(z.transpose(1, 2)).transpose(1, 2))
        return self.revin.denormalize(y, stats) if self.revin is not None else y
