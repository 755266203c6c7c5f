"""NuTime (Lin et al. TMLR 2024, "NuTime: Numerically Multi-Scaled Embedding for Large-Scale Time-Series
Pretraining").

Each channel's series is cut into N non-overlapping windows of W steps; a window is represented by
its normalised shape and two raw scalars, its mean and standard deviation:

    s_n = (x_n - mu_n) / sigma_n                       (the window's shape: mean 0, std 1)
    t_n = LN(W_f [LN(W_s s_n); NME(mu_n); NME(sigma_n)])   (one token per window)
    Z   = Encoder([cls; t_1 .. t_N] + PE)              (pre-norm transformer, registered attention)

NME (labformer.layers.nme) embeds mu and sigma whatever their magnitude, so the encoder reads raw
values: no dataset normalisation is needed (the paper's point: one model pretrained across
domains of any scale). Channels are independent sequences with shared weights (the paper pretrains
on univariate series), so a pretrained encoder fits data with any number of channels; the
class token is the series representation, mapped to the H outputs per channel.

Forecasting reads the horizon in units of the lookback's per-channel mean/std (`denormalize`);
for classification and contrastive features, `model.denormalize=false` keeps the output bounded
whatever the input scale. `head=flatten` reads all window tokens instead of the class token
(PatchTST-style, more capacity for long horizons). A series whose length is not a multiple of W
is left-padded with its first value.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.layers.block import TransformerBlock
from labformer.layers.nme import BOUNDS, NumericallyMultiScaledEmbedding, default_scales
from labformer.models.timeseries.transformer import sinusoidal_positions
from labformer.registry import register

HEADS = ("cls", "flatten")


def pad_to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """x [..., L] left-padded with its first value to a multiple of `window` (the recent end stays aligned)."""
    pad = (-x.shape[-1]) % window
    return F.pad(x, (pad, 0), mode="replicate") if pad else x


def window_normalize(x: torch.Tensor, window: int, eps: float = 1e-6
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [..., L] (L a multiple of W) -> (shapes [..., N, W], means [..., N], stds [..., N]).

    Population std. A flat window (std within float rounding of its mean) has shape 0: dividing its
    rounding noise would invent a pattern; its std still reaches the NME, as the paper's stats do."""
    windows = x.unflatten(-1, (-1, window))
    mean = windows.mean(-1)
    std = windows.std(-1, unbiased=False)
    flat = std <= eps * mean.abs() + 1e-12
    shape = (windows - mean[..., None]) / torch.where(flat, 1.0, std)[..., None]
    return shape.masked_fill(flat[..., None], 0.0), mean, std


@register("nutime", task="timeseries", paper="Lin et al. TMLR 2024")
class NuTime(nn.Module):
    def __init__(self, lookback: int, horizon: int, channels: int, window: int = 16, dim: int = 128,
                 depth: int = 6, num_heads: int = 8, ffn_ratio: float = 4.0, stats_dim: int = 32,
                 num_scales: int = 9, scale_base: float = 10.0, bound: str = "layernorm", dropout: float = 0.1,
                 head: str = "cls", denormalize: bool = True, attention: str = "softmax",
                 attention_kwargs: dict[str, Any] | None = None) -> None:
        """window: steps per token (the paper: 16); stats_dim: width of each NME embedding (mean, std);
        num_scales, scale_base: the NME scales scale_base^-m .. scale_base^m (9, 10: 1e-4 .. 1e4); bound:
        each NME branch's bounding function, layernorm (the paper) | tanh | clip; head: cls (the class token,
        the paper's representation) | flatten (every window token); denormalize: outputs in units of the
        lookback's per-channel mean/std (forecasting), false for classification / contrastive features;
        attention: the encoder's token mixer, a registered attention variant (options in attention_kwargs)."""
        super().__init__()
        if head not in HEADS:
            raise UserError(f"model.head={head!r} is unknown; use one of {', '.join(HEADS)}")
        if window < 2:
            raise UserError(f"model.window={window} leaves no shape to normalise. Fix: model.window>=2 (e.g. 16)")
        if bound not in BOUNDS:
            raise UserError(f"model.bound={bound!r} is unknown; use one of {', '.join(BOUNDS)}")
        self.window, self.head_kind, self.denormalize = window, head, denormalize
        self.num_windows = -(-lookback // window)
        self.shape_embed = nn.Sequential(nn.Linear(window, dim), nn.LayerNorm(dim))
        scales = default_scales(num_scales, scale_base)
        self.mean_embed = NumericallyMultiScaledEmbedding(stats_dim, scales, bound)
        self.std_embed = NumericallyMultiScaledEmbedding(stats_dim, scales, bound)
        self.fuse = nn.Sequential(nn.Linear(dim + 2 * stats_dim, dim), nn.LayerNorm(dim))
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos", sinusoidal_positions(self.num_windows + 1, dim), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, causal=False, max_len=self.num_windows + 1, attention=attention,
                             attention_kwargs=attention_kwargs, ffn_kwargs={"hidden_ratio": ffn_ratio},
                             dropout=dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        width = dim if head == "cls" else dim * (self.num_windows + 1)
        self.out = nn.Linear(width, horizon)
        self.num_features = dim
        nn.init.trunc_normal_(self.cls, std=0.02)

    def tokens(self, series: torch.Tensor) -> torch.Tensor:
        """series [S, L] (raw values) -> window tokens [S, N, D]."""
        shape, mean, std = window_normalize(pad_to_windows(series, self.window), self.window)
        # The stats are inputs, not something to differentiate: std has no gradient at a flat window.
        mean, std = mean.detach(), std.detach()
        parts = [self.shape_embed(shape), self.mean_embed(mean).to(shape.dtype), self.std_embed(std).to(shape.dtype)]
        return self.fuse(torch.cat(parts, dim=-1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [B,L,C] -> every channel's tokens after the encoder [B*C, 1+N, D] (class token first)."""
        b, _, c = x.shape
        t = self.tokens(x.transpose(1, 2).reshape(b * c, -1))
        z = self.drop(torch.cat([self.cls.expand(len(t), -1, -1), t], dim=1) + self.pos)
        for block in self.blocks:
            z = block(z)
        return self.norm(z)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B,L,C] -> the class token per channel [B,C,D]: the paper's series representation."""
        return self.encode(x)[:, 0].unflatten(0, (x.shape[0], x.shape[2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,L,C] -> [B,H,C]
        b, _, c = x.shape
        z = self.encode(x)
        z = z[:, 0] if self.head_kind == "cls" else z.flatten(1)
        y = self.out(z).unflatten(0, (b, c)).transpose(1, 2)
        if not self.denormalize:
            return y
        mean = x.mean(1, keepdim=True).detach()
        std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5).detach()
        return y * std + mean
