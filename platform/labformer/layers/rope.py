"""Rotary position embedding (Su et al. 2021): rotate pairs of channels by position-dependent angles.

    RoPE(x)_t = x_t rotated, channel pair (i, i + d/2) by angle t * base^(-2i/d)

so q_s . k_t depends on s - t only. Applied to queries and keys [B,H,T,d] (d even).
"""
from __future__ import annotations

import torch


def rope_angles(length: int, dim: int, base: float = 10000.0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = base ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None]
    return angles.cos(), angles.sin()  # [T, d/2] each


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    t = x.shape[-2]
    c, s = cos[:t], sin[:t]
    return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).to(x.dtype)
