"""Normalisation layers (kind "norm"): LayerNorm and RMSNorm, both from torch.

    LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps) * g + b        (Ba et al. 2016)
    RMSNorm(x)   = x / sqrt(mean(x^2) + eps) * g                      (Zhang & Sennrich 2019)

nGPT's hypersphere normalisation is a whole block family, not a drop-in norm: see
`labformer.models.lm.ngpt`.
"""
from __future__ import annotations

import torch.nn as nn

from labformer.layers.build import ANY_TASK
from labformer.registry import register


@register("layernorm", task=ANY_TASK, kind="norm", paper="Ba et al. 2016")
def layernorm(dim: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    return nn.LayerNorm(dim, eps=eps, bias=bias)


@register("rmsnorm", task=ANY_TASK, kind="norm", paper="Zhang & Sennrich 2019")
def rmsnorm(dim: int, eps: float = 1e-6) -> nn.Module:
    return nn.RMSNorm(dim, eps=eps)
