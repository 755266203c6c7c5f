"""2-simplicial attention (Clift et al. 2019; as revisited by Roy et al. 2025): each query
attends to *pairs* of positions through a trilinear form.

    logits_ijk = sum_c q_ic k_jc k'_kc / sqrt(d_h)           (j, k <= i when causal)
    A_i        = softmax over all pairs (j, k) of logits_i..
    out_i      = sum_jk A_ijk (v_j * v'_k)                     (* elementwise)

It can express interactions of three tokens that dot-product attention needs two layers
for. Cost and memory are O(T^3) per head here (the full pair set; Roy et al. restrict k to
a local window for speed), so it suits short contexts.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from labformer.layers.attention.base import QKVAttention
from labformer.layers.build import ANY_TASK
from labformer.registry import register


@register("simplicial", task=ANY_TASK, kind="attention", causal=True, complexity="O(T^3 d)",
          paper="Clift et al. 2019, Logic and the 2-Simplicial Transformer; Roy et al. 2025")
class SimplicialAttention(QKVAttention):
    def __init__(self, dim: int, num_heads: int, causal: bool = False, max_len: int = 1024, dropout: float = 0.0,
                 bias: bool = True) -> None:
        super().__init__(dim, num_heads, causal, max_len, dropout, bias)
        self.kv2 = nn.Linear(dim, 2 * dim, bias=bias)  # the second key k' and value v'
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k2, v2 = self.kv2(x).view(b, t, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        logits = torch.einsum("bhic,bhjc,bhkc->bhijk", q, k, k2) * self.head_dim ** -0.5
        if self.causal:
            past = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()  # [i, j]: j <= i
            logits = logits.masked_fill(~(past[:, :, None] & past[:, None, :]), float("-inf"))
        attn = self.drop(logits.flatten(-2).softmax(-1).view_as(logits))
        out = torch.einsum("bhijk,bhjc,bhkc->bhic", attn, v, v2)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))
