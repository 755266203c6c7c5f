"""Scaled dot-product attention (Vaswani et al. 2017) through torch SDPA.

    Attn(Q, K, V) = softmax(Q K^T / sqrt(d_h) + M) V,   M_ij = -inf for j > i when causal

SDPA picks a fused kernel (flash / memory-efficient) when the device has one, so memory
is O(T) there and O(T^2) in the plain math kernel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from labformer.layers.attention.base import QKVAttention
from labformer.layers.build import ANY_TASK
from labformer.registry import register


@register("softmax", task=ANY_TASK, kind="attention", causal=True, complexity="O(T^2 d)",
          paper="Vaswani et al. 2017")
class SoftmaxAttention(QKVAttention):
    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout, is_causal=self.causal)
