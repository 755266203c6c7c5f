"""Attention with persistent memory (Sukhbaatar et al. 2019, "Augmenting Self-attention with
Persistent Memory").

N learned key/value slots per head are appended to every sequence's keys and values:

    K' = [M_k ; K],  V' = [M_v ; V],   out = softmax(Q K'^T / sqrt(d_h) + M) V'

The slots hold context-independent knowledge (the paper's replacement for the FFN), and
every query may attend to them (they are never masked, also under causal masking, since
they do not depend on the input). With `ffn=none` in the block this is the paper's
all-attention layer (backbone `all_attention`).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.layers.attention.base import QKVAttention
from labformer.layers.build import ANY_TASK
from labformer.registry import register


@register("persistent_memory", task=ANY_TASK, kind="attention", causal=True, complexity="O(T (T + N) d)",
          paper="Sukhbaatar et al. 2019")
class PersistentMemoryAttention(QKVAttention):
    def __init__(self, dim: int, num_heads: int, causal: bool = False, max_len: int = 1024, dropout: float = 0.0,
                 bias: bool = True, num_slots: int = 16) -> None:
        super().__init__(dim, num_heads, causal, max_len, dropout, bias)
        if num_slots < 1:
            raise UserError(f"persistent_memory num_slots must be >= 1, got {num_slots}")
        self.num_slots = num_slots
        self.memory_k = nn.Parameter(torch.empty(num_heads, num_slots, self.head_dim))
        self.memory_v = nn.Parameter(torch.empty(num_heads, num_slots, self.head_dim))
        self.reset_memory()

    def reset_memory(self) -> None:
        # Keys at the scale of projected keys (q.k ~ 1 after 1/sqrt(d_h)); values of unit total scale.
        nn.init.normal_(self.memory_k, std=self.head_dim ** -0.5)
        nn.init.normal_(self.memory_v, std=self.num_slots ** -0.5)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, t = q.shape[0], q.shape[-2]
        k = torch.cat([self.memory_k.expand(b, -1, -1, -1).to(k.dtype), k], dim=2)
        v = torch.cat([self.memory_v.expand(b, -1, -1, -1).to(v.dtype), v], dim=2)
        mask = None
        if self.causal:
            mask = torch.ones(t, self.num_slots + t, dtype=torch.bool, device=q.device)
            mask[:, self.num_slots:] = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.attn_dropout)
