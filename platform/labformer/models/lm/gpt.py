"""GPT: a decoder-only transformer (Radford et al. 2018/2019) whose blocks are built from the
shared layer registry, so every attention / norm / FFN variant plugs in by name.

    h_0 = E_tok[tokens] + E_pos[0..T-1]
    h_l = Block_l(h_{l-1})            (pre-norm, see `labformer.layers.block`)
    out = N_f(h_L)                    [B, T, D]; the task owns the (tied) LM head

With `causal=false` (set by the data: the classification mode) the same stack is a
bidirectional encoder, and non-causal mixers such as fnet or linformer become valid.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn as nn

from labformer.errors import UserError
from labformer.layers.block import TransformerBlock
from labformer.layers.build import build_layer
from labformer.models.lm.base import LMBackbone
from labformer.registry import register


@register("gpt", task="lm", paper="Radford et al. 2019 (GPT-2), nanoGPT layout")
class GPT(LMBackbone):
    def __init__(self, vocab_size: int, max_len: int, causal: bool = True, depth: int = 4, dim: int = 128,
                 num_heads: int = 4, attention: str = "softmax", attention_kwargs: dict[str, Any] | None = None,
                 norm: str = "layernorm", ffn: str = "mlp", ffn_kwargs: dict[str, Any] | None = None,
                 layout: Literal["sequential", "parallel"] = "sequential", dropout: float = 0.0, bias: bool = True,
                 pos_embedding: Literal["learned", "none"] = "learned",
                 norm_kwargs: dict[str, Any] | None = None) -> None:
        """Defaults: nanoGPT's CPU configuration (4 layers, 4 heads, width 128: 0.8M parameters).
        attention: softmax | sparse | performer | linear | persistent_memory | simplicial (causal); fnet |
        linformer (encoders only); attention_kwargs: the variant's options, e.g.
        model.attention_kwargs='{num_features: 128}' for performer; norm: layernorm | rmsnorm; norm_kwargs: e.g.
        {bias: false} for layernorm, {eps: 1e-5}; ffn: mlp (GELU) | swiglu | polynorm | polyrelu | none;
        ffn_kwargs: e.g. {hidden_ratio: 4.0}, or {order: 3} for polynorm/polyrelu; layout: parallel computes
        attention and FFN from one norm and sums them; bias: of the linear layers (nanoGPT's recipe: false, with
        norm_kwargs {bias: false})."""
        super().__init__()
        if min(vocab_size, max_len, depth, dim, num_heads) < 1:
            raise UserError("gpt needs vocab_size, max_len, depth, dim and num_heads >= 1")
        self.vocab_size, self.max_len, self.causal, self.num_features = vocab_size, max_len, causal, dim
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.pos_embedding = nn.Embedding(max_len, dim) if pos_embedding == "learned" else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, causal, max_len, attention, attention_kwargs, norm, ffn, ffn_kwargs,
                             layout, dropout, bias, norm_kwargs) for _ in range(depth))
        self.norm = build_layer("norm", norm, "model.norm_kwargs", dim=dim, **(norm_kwargs or {}))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's init: N(0, 0.02) for linear and embedding weights, zero biases, and the
        projections that write into the residual stream (`out_proj`) scaled by 1/sqrt(2 depth)
        so the stream's variance does not grow with depth. Layer-specific parameters (memory
        slots, Linformer projections, feature maps) keep their own init."""
        residual_std = 0.02 / math.sqrt(2 * len(self.blocks))
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = residual_std if name.endswith("out_proj") else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        if t > self.max_len:
            raise UserError(f"sequence of {t} tokens is longer than the model's max_len={self.max_len}")
        h = self.token_embedding(tokens)
        if self.pos_embedding is not None:
            h = h + self.pos_embedding.weight[:t]
        h = self.drop(h)
        for block in self.blocks:
            h = block(h)
        return self.norm(h)


# GPT whose blocks are persistent-memory attention without FFN sub-layers;
# model.attention_kwargs.num_slots: learned key/value slots per head.
register("all_attention", task="lm", paper="Sukhbaatar et al. 2019, Augmenting Self-attention with Persistent Memory",
         args=dict(attention_kwargs={"num_slots": 64}), fixed=dict(attention="persistent_memory", ffn="none"))(GPT)
