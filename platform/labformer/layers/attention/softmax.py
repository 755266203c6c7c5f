"""Scaled dot-product attention (Vaswani et al. 2017) through torch SDPA.

    Attn(Q, K, V) = softmax(Q K^T / sqrt(d_h) + M) V,   M_ij = -inf for j > i when causal

SDPA picks a fused kernel (flash / memory-efficient) when the device has one, so memory
is O(T) there and O(T^2) in the plain math kernel.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from labformer.layers.attention.base import QKVAttention
from labformer.layers.build import ANY_TASK
from labformer.registry import register


@register("softmax", task=ANY_TASK, kind="attention", causal=True, complexity="O(T^2 d)",
          paper="Vaswani et al. 2017")
class SoftmaxAttention(QKVAttention):
    # Set by labformer.analysis: the fused kernels never form the probabilities, so a recording
    # call spells the same math out and keeps them in `probs` [B,H,T,T]; off, SDPA runs as always.
    record = False
    probs: torch.Tensor | None = None
    # Set by labformer.analysis.atman: factors [B, T] multiplying the pre-softmax scores to each key
    # (AtMan's suppression, QK^T/sqrt(d_h) * f before the mask); a call with them takes the explicit path.
    suppress: torch.Tensor | None = None

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.record or self.suppress is not None:
            return self.attend_recorded(q, k, v)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout, is_causal=self.causal)

    def attend_recorded(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if self.suppress is not None:
            scores = scores * self.suppress[:, None, None, :].to(scores.dtype)
        if self.causal:  # SDPA's is_causal: key j > query i is masked
            t, s = scores.shape[-2:]
            scores = scores.masked_fill(torch.ones(t, s, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
        probs = scores.softmax(dim=-1)
        self.probs = probs.detach()
        return F.dropout(probs, self.attn_dropout) @ v
