"""Linformer (Wang et al. 2020): low-rank projection of keys and values along the sequence.

    out = softmax(Q (E K)^T / sqrt(d_h)) (F V),   E, F in R^{k x n}

with n = max_len (the first T columns are used for a shorter sequence) and k = `proj_len`,
so the attention matrix is T x k: O(T k d). E and F are shared by all heads (the paper's
head-wise sharing); `share_kv=true` also makes F = E. The projection mixes all positions,
so it cannot be causal.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.layers.attention.base import QKVAttention, refuse_causal
from labformer.layers.build import ANY_TASK
from labformer.registry import register


@register("linformer", task=ANY_TASK, kind="attention", causal=False, complexity="O(T k d)",
          paper="Wang et al. 2020, Linformer: Self-Attention with Linear Complexity")
class LinformerAttention(QKVAttention):
    def __init__(self, dim: int, num_heads: int, causal: bool = False, max_len: int = 1024, dropout: float = 0.0,
                 bias: bool = True, proj_len: int = 32, share_kv: bool = False) -> None:
        refuse_causal("linformer", causal)
        super().__init__(dim, num_heads, causal, max_len, dropout, bias)
        if proj_len < 1:
            raise UserError(f"linformer proj_len must be >= 1, got {proj_len}")
        self.proj_len = proj_len
        self.proj_k = nn.Parameter(torch.empty(proj_len, max_len))
        self.proj_v = None if share_kv else nn.Parameter(torch.empty(proj_len, max_len))
        self.reset_projections()

    def reset_projections(self) -> None:
        for p in (self.proj_k, self.proj_v):
            if p is not None:  # a mean-preserving scale: each projected row averages ~n keys
                nn.init.normal_(p, std=self.max_len ** -0.5)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        t = k.shape[-2]
        if t > self.max_len:
            raise UserError(f"linformer was built for sequences of at most {self.max_len} tokens, got {t}")
        e = self.proj_k[:, :t].to(k.dtype)
        f = e if self.proj_v is None else self.proj_v[:, :t].to(v.dtype)
        k, v = torch.einsum("kt,bhtd->bhkd", e, k), torch.einsum("kt,bhtd->bhkd", f, v)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout)
