"""A pre-norm transformer block assembled from registered parts (attention, norm, ffn).

    sequential:  x <- x + Drop(Attn(N1(x)));  x <- x + Drop(FFN(N2(x)))      (GPT-2)
    parallel:    x <- x + Drop(Attn(N(x)) + FFN(N(x)))                       (GPT-J, PaLM)

`ffn="none"` drops the feed-forward sub-layer (with persistent-memory attention: the
all-attention layer of Sukhbaatar et al. 2019).
"""
from __future__ import annotations

import inspect
from typing import Any, Literal

import torch
import torch.nn as nn

from labformer import registry
from labformer.errors import UserError
from labformer.layers.attention.base import build_attention
from labformer.layers.build import build_layer

LAYOUTS = ("sequential", "parallel")


def build_ffn(name: str, dim: int, causal: bool, dropout: float, bias: bool, kwargs: dict[str, Any]) -> nn.Module:
    """The FFN `name`; variants that see other tokens (registry meta causal=False: soft_moe) refuse a causal
    block, and variants that take `causal` (the MoE layers) are told, so they can refuse settings that are not."""
    entry = registry.get(name, kind="ffn")
    if causal and entry.meta.get("causal") is False:
        causal_ones = ", ".join(e.name for e in registry.entries("ffn") if e.meta.get("causal", True))
        raise UserError(f"model.ffn={name} mixes tokens across the sequence, so it cannot be used in a causal "
                        f"(decoder) model. Fix: one of {causal_ones}")
    if "causal" in inspect.signature(entry.builder).parameters:
        kwargs = {**kwargs, "causal": causal}
    return build_layer("ffn", name, "model.ffn_kwargs", dim=dim, dropout=dropout, bias=bias, **kwargs)


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, causal: bool, max_len: int, attention: str = "softmax",
                 attention_kwargs: dict[str, Any] | None = None, norm: str = "layernorm",
                 ffn: str = "mlp", ffn_kwargs: dict[str, Any] | None = None,
                 layout: Literal["sequential", "parallel"] = "sequential", dropout: float = 0.0,
                 bias: bool = True, norm_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise UserError(f"model.layout={layout!r} is unknown; use one of {', '.join(LAYOUTS)}")
        self.layout = layout
        norm_kwargs = norm_kwargs or {}
        self.norm1 = build_layer("norm", norm, "model.norm_kwargs", dim=dim, **norm_kwargs)
        self.attn = build_attention(attention, dim=dim, num_heads=num_heads, causal=causal, max_len=max_len,
                                    dropout=dropout, bias=bias, **(attention_kwargs or {}))
        self.ffn = None if ffn == "none" else build_ffn(ffn, dim, causal, dropout, bias, ffn_kwargs or {})
        self.norm2 = build_layer("norm", norm, "model.norm_kwargs", dim=dim, **norm_kwargs) \
            if self.ffn is not None and layout == "sequential" else None
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "parallel":
            h = self.norm1(x)
            update = self.attn(h) if self.ffn is None else self.attn(h) + self.ffn(h)
            return x + self.drop(update)
        x = x + self.drop(self.attn(self.norm1(x)))
        if self.ffn is not None:
            x = x + self.drop(self.ffn(self.norm2(x)))
        return x
