"""What attention variants share: the q/k/v and output projections, and the causal check."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from labformer.errors import UserError
from labformer.layers.build import build_layer, names


def causal_attention_names() -> list[str]:
    return names("attention", causal=True)


def build_attention(name: str, *, dim: int, num_heads: int, causal: bool, max_len: int, dropout: float = 0.0,
                    bias: bool = True, where: str = "model.attention_kwargs", **options: Any) -> nn.Module:
    """Build attention `name`; a non-causal mixer asked to be causal is a UserError naming the causal ones."""
    from labformer import registry

    entry = registry.get(name, kind="attention")
    if causal and not entry.meta.get("causal", False):
        raise UserError(
            f"attention '{name}' cannot be causal: it mixes every position with every other, so a language "
            f"model would see the tokens it must predict. For task=lm use a causal variant: "
            f"{', '.join(causal_attention_names())} (e.g. model.attention=softmax). '{name}' serves the "
            f"sequence-classification mode (e.g. data=markov_classes).")
    return build_layer("attention", name, where, dim=dim, num_heads=num_heads, causal=causal, max_len=max_len,
                       dropout=dropout, bias=bias, **options)


def refuse_causal(name: str, causal: bool) -> None:
    """For mixers that see the whole sequence (guards direct construction too)."""
    if causal:
        raise UserError(f"attention '{name}' cannot be causal; causal variants: {', '.join(causal_attention_names())}")


class QKVAttention(nn.Module):
    """Multi-head attention skeleton: x -> q, k, v [B,H,T,Dh] -> attend -> out_proj.

    Subclasses implement `attend(q, k, v) -> [B,H,T,Dh]`; the projections are the usual
    `qkv: D -> 3D` and `out_proj: D -> D` (named so the backbone scales its init by depth).
    """

    def __init__(self, dim: int, num_heads: int, causal: bool = False, max_len: int = 1024, dropout: float = 0.0,
                 bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise UserError(f"model.dim={dim} must be divisible by model.num_heads={num_heads}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.causal, self.max_len, self.dropout = causal, max_len, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = self.attend(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))

    @property
    def attn_dropout(self) -> float:
        return self.dropout if self.training else 0.0
