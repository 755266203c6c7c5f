"""PatchTST (Nie et al. ICLR 2023, "A Time Series is Worth 64 Words").

Channel independence: every channel is forecast by the same transformer on its own.
A channel's lookback (padded at the end by repeating its last value for `stride` steps)
is cut into overlapping patches of `patch_len` with step `stride`; each patch is one token:

    tokens = W_p patch_i + pos_i        (patch_len -> D, learned positions)
    Z      = Encoder(tokens)            (BatchNorm transformer over the N patches)
    y      = W_h flatten(Z)             (N*D -> H)

inside RevIN. (The reference's "residual attention" across layers is left out.)
"""
from __future__ import annotations

import torch
import torch.nn as nn

from labformer.layers.revin import RevIN
from labformer.models.timeseries.blocks import EncoderLayer
from labformer.registry import register


@register("patchtst", task="timeseries", paper="Nie et al. ICLR 2023")
class PatchTST(nn.Module):
    def __init__(self, lookback: int, horizon: int, channels: int, patch_len: int = 16, stride: int = 8,
                 dim: int = 16, depth: int = 3, num_heads: int = 4, ffn_dim: int = 128, dropout: float = 0.3,
                 head_dropout: float = 0.0, use_revin: bool = True) -> None:
        """Defaults: the paper's ETTh1 (small-data) widths."""
        super().__init__()
        if lookback < patch_len:
            raise ValueError(f"lookback {lookback} is shorter than one patch ({patch_len}); lower model.patch_len")
        self.patch_len, self.stride = patch_len, stride
        self.num_patches = (lookback - patch_len) // stride + 2  # +1 for the end padding
        self.revin = RevIN(channels) if use_revin else None
        self.embed = nn.Linear(patch_len, dim)
        self.pos = nn.Parameter(torch.empty(self.num_patches, dim))
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(dim, num_heads, ffn_dim, dropout, norm="batch") for _ in range(depth))
        self.head = nn.Sequential(nn.Flatten(1), nn.Dropout(head_dropout), nn.Linear(self.num_patches * dim, horizon))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.pos, -0.02, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,L,C] -> [B,H,C]
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        b, _, c = x.shape
        series = x.transpose(1, 2).reshape(b * c, -1)  # channel independence: [B*C, L]
        series = torch.cat([series, series[:, -1:].expand(-1, self.stride)], dim=1)
        patches = series.unfold(1, self.patch_len, self.stride)  # [B*C, N, patch_len]
        tokens = self.drop(self.embed(patches) + self.pos)
        for layer in self.layers:
            tokens = layer(tokens)
        y = self.head(tokens).view(b, c, -1).transpose(1, 2)
        return self.revin.denormalize(y, stats) if self.revin is not None else y
