"""Kernelised linear attention (Katharopoulos et al. 2020) with a choice of feature map.

    out_i = phi(q_i)^T sum_j phi(k_j) v_j^T / phi(q_i)^T sum_j phi(k_j)     (j <= i when causal)

feature_map:
    elu       phi(x) = elu(x) + 1                           (Katharopoulos et al. 2020)
    relu      phi(x) = relu(x)
    identity  phi(x) = x            (only with normalization=rmsnorm: the denominator may vanish)
    hedgehog  phi(x) = [softmax(W x), softmax(-W x)], W learned per head (a learnable kernel
              that can mimic softmax's spikiness; Zhang et al. 2024), W initialised to I
normalization:
    denominator   the ratio above
    rmsnorm       TransNormer's NormAttention (Qin et al. 2022): drop the denominator, whose
                  unbounded gradients destabilise training, and normalise the output instead:
                  out_i = RMSNorm(phi(q_i)^T sum_j phi(k_j) v_j^T) per head
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.layers.attention.base import QKVAttention
from labformer.layers.attention.kernels import linear_attention
from labformer.layers.build import ANY_TASK
from labformer.registry import register


class HedgehogFeatures(nn.Module):
    """[softmax(W x), softmax(-W x)] with W [H, d, d] learned per head: x [B,H,T,d] -> [B,H,T,2d]."""

    def __init__(self, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(head_dim).repeat(num_heads, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.einsum("bhtd,hde->bhte", x, self.weight)
        return torch.cat([z.softmax(-1), (-z).softmax(-1)], dim=-1)


def learnable_feature_map(name: str, num_heads: int, head_dim: int) -> nn.Module | None:
    """A module for learnable maps, None for fixed ones (applied in `_phi`)."""
    return HedgehogFeatures(num_heads, head_dim) if name == "hedgehog" else None


@register("linear", task=ANY_TASK, kind="attention", causal=True, complexity="O(T d^2)",
          paper="Katharopoulos et al. 2020; TransNormer (Qin et al. 2022); Hedgehog (Zhang et al. 2024)")
class LinearAttention(QKVAttention):
    def __init__(self, dim: int, num_heads: int, causal: bool = False, max_len: int = 1024, dropout: float = 0.0,
                 bias: bool = True, feature_map: Literal["elu", "relu", "identity", "hedgehog"] = "elu",
                 normalization: Literal["denominator", "rmsnorm"] = "denominator", chunk: int = 64,
                 eps: float = 1e-6) -> None:
        super().__init__(dim, num_heads, causal, max_len, dropout, bias)
        if feature_map == "identity" and normalization == "denominator":
            raise UserError("linear attention with feature_map=identity needs normalization=rmsnorm "
                            "(phi(q)^T sum phi(k) can be zero or negative)")
        self.feature_map_name, self.normalization, self.chunk, self.eps = feature_map, normalization, chunk, eps
        self.learned_map = learnable_feature_map(feature_map, num_heads, self.head_dim)
        self.out_norm = nn.RMSNorm(self.head_dim) if normalization == "rmsnorm" else None

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        if self.learned_map is not None:
            return self.learned_map(x)
        if self.feature_map_name == "elu":
            return F.elu(x) + 1
        if self.feature_map_name == "relu":
            return F.relu(x)
        return x

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = linear_attention(self.phi(q), self.phi(k), v, self.causal,
                               normalize=self.out_norm is None, eps=self.eps, chunk=self.chunk)
        return out if self.out_norm is None else self.out_norm(out)
