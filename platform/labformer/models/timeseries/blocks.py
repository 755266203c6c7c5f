"""Blocks shared by the time-series transformers (iTransformer, PatchTST, vanilla encoder).

`EncoderLayer`: multi-head self-attention through torch SDPA, then a two-layer MLP, each
with a residual; post-norm as in the original Transformer, which iTransformer and PatchTST
keep. PatchTST normalises with BatchNorm over the token axis (its paper found it better
than LayerNorm for time series), hence `norm="batch"`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SelfAttention(nn.Module):
    """softmax(Q K^T / sqrt(d_head)) V per head, via F.scaled_dot_product_attention."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"model width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,N,D] -> [B,N,D]
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class TokenBatchNorm(nn.Module):
    """BatchNorm1d over the feature axis of [B,N,D] tokens (PatchTST's normalisation)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class EncoderLayer(nn.Module):
    """x = norm(x + attn(x)); x = norm(x + mlp(x))."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.1,
                 activation: str = "gelu", norm: str = "layer") -> None:
        super().__init__()
        make_norm = {"layer": nn.LayerNorm, "batch": TokenBatchNorm}[norm]
        self.attn = SelfAttention(dim, num_heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, ffn_dim), {"gelu": nn.GELU, "relu": nn.ReLU}[activation](),
                                 nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm1, self.norm2 = make_norm(dim), make_norm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x)))
        return self.norm2(x + self.drop(self.mlp(x)))
