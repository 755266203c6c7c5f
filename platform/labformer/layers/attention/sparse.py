"""Sparse Transformer attention patterns (Child et al. 2019), as masks over softmax attention.

With stride l, query i may attend key j when (and, if causal, also j <= i):

    strided:  A1 = {j : |i - j| < l}            (the previous l positions)
              A2 = {j : (i - j) mod l = 0}      (every l-th position before)
    fixed:    A1 = {j : floor(j / l) = floor(i / l)}     (the same block of l)
              A2 = {j : j mod l >= l - c}                (the last c "summary" cells of every block)

Every head attends to A1 ∪ A2 (the paper's "merged" heads). The pattern reaches any
earlier position in two hops with O(T sqrt T) pairs when l ~ sqrt T; this reference
version applies the mask to a dense product (fused block-sparse kernels are GPU-only),
so it shows the model's quality, not the speed.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.layers.attention.base import QKVAttention
from labformer.layers.build import ANY_TASK
from labformer.registry import register


def sparse_mask(length: int, pattern: str, stride: int, summary: int = 1, causal: bool = True) -> torch.Tensor:
    """Boolean [T, T], True where query i may attend key j."""
    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    if pattern == "strided":
        allowed = ((i - j).abs() < stride) | ((i - j) % stride == 0)
    elif pattern == "fixed":
        allowed = (i // stride == j // stride) | (j % stride >= stride - summary)
    else:
        raise UserError(f"sparse attention pattern '{pattern}' is unknown; use strided or fixed")
    return allowed & (j <= i) if causal else allowed


@register("sparse", task=ANY_TASK, kind="attention", causal=True,
          complexity="O(T sqrt(T) d) pattern (dense masked product here)", paper="Child et al. 2019")
class SparseAttention(QKVAttention):
    def __init__(self, dim: int, num_heads: int, causal: bool = False, max_len: int = 1024, dropout: float = 0.0,
                 bias: bool = True, pattern: Literal["strided", "fixed"] = "strided", stride: int = 8,
                 summary: int = 1) -> None:
        super().__init__(dim, num_heads, causal, max_len, dropout, bias)
        if stride < 1 or not 1 <= summary <= stride:
            raise UserError(f"sparse attention needs stride >= 1 and 1 <= summary <= stride "
                            f"(got stride={stride}, summary={summary})")
        self.pattern, self.stride, self.summary = pattern, stride, summary
        self.register_buffer("mask", sparse_mask(max_len, pattern, stride, summary, causal), persistent=False)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        t = q.shape[-2]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask[:t, :t], dropout_p=self.attn_dropout)
