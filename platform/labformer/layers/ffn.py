"""Position-wise feed-forward layers (kind "ffn"). Every variant maps [..., D] -> [..., D]
and names its last projection `out_proj` (the backbone scales its initialisation by depth).

    mlp:      out_proj(GELU(fc(x)))                                      (Vaswani 2017, GPT-2)
    swiglu:   out_proj(SiLU(W1 x) * W3 x)                                 (Shazeer 2020)
    polynorm: out_proj(PolyNorm(fc(x))),  PolyNorm(h) = sum_i a_i N(h^i) + b
    polyrelu: out_proj(PolyReLU(fc(x))),  PolyReLU(h) = sum_i a_i ReLU(h)^i + b
              with N(u) = u / sqrt(mean(u^2) + eps), i = 1..order     (Zhuo et al. 2024)

`hidden_ratio` is the hidden width of the plain MLP; SwiGLU uses 2/3 of it (rounded up to
a multiple of 8) so that its three matrices hold as many weights as the MLP's two.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.layers.build import ANY_TASK
from labformer.registry import register


def _hidden(dim: int, ratio: float) -> int:
    if ratio <= 0:
        raise UserError(f"ffn hidden_ratio must be > 0, got {ratio}")
    return max(1, int(round(dim * ratio)))


@register("mlp", task=ANY_TASK, kind="ffn", paper="Vaswani et al. 2017 (GELU: Hendrycks & Gimpel 2016)")
class MLP(nn.Module):
    def __init__(self, dim: int, hidden_ratio: float = 4.0, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        hidden = _hidden(dim, hidden_ratio)
        self.fc = nn.Linear(dim, hidden, bias=bias)
        self.out_proj = nn.Linear(hidden, dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.drop(F.gelu(self.fc(x))))


@register("swiglu", task=ANY_TASK, kind="ffn", paper="Shazeer 2020, GLU Variants Improve Transformer")
class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden_ratio: float = 4.0, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        hidden = 8 * math.ceil(_hidden(dim, hidden_ratio) * 2 / 3 / 8)
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=bias)  # W1 and W3 in one matmul
        self.out_proj = nn.Linear(hidden, dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.out_proj(self.drop(F.silu(gate) * up))


class PolyNorm(nn.Module):
    """sum_{i=1..r} a_i N(x^i) + b: the powers are normalised so x^3 cannot dominate."""

    def __init__(self, order: int = 3, eps: float = 1e-6) -> None:
        super().__init__()
        if order < 1:
            raise UserError(f"ffn order must be >= 1, got {order}")
        self.order, self.eps = order, eps
        self.weight = nn.Parameter(torch.full((order,), 1.0 / order))  # the paper's init: equal shares
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bias
        for i in range(1, self.order + 1):
            p = x ** i
            out = out + self.weight[i - 1] * p * torch.rsqrt(p.pow(2).mean(-1, keepdim=True) + self.eps)
        return out


class PolyReLU(nn.Module):
    """sum_{i=1..r} a_i ReLU(x)^i + b (the i=0 term of the paper is the bias b)."""

    def __init__(self, order: int = 3) -> None:
        super().__init__()
        if order < 1:
            raise UserError(f"ffn order must be >= 1, got {order}")
        self.order = order
        self.weight = nn.Parameter(torch.full((order,), 1.0 / order))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.relu(x)
        return self.bias + sum(self.weight[i - 1] * r ** i for i in range(1, self.order + 1))


class _PolyMLP(nn.Module):
    activation: type[nn.Module]

    def __init__(self, dim: int, hidden_ratio: float = 4.0, dropout: float = 0.0, bias: bool = True,
                 order: int = 3) -> None:
        super().__init__()
        hidden = _hidden(dim, hidden_ratio)
        self.fc = nn.Linear(dim, hidden, bias=bias)
        self.act = self.activation(order)
        self.out_proj = nn.Linear(hidden, dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.drop(self.act(self.fc(x))))


@register("polynorm", task=ANY_TASK, kind="ffn", paper="Zhuo et al. 2024, Polynomial Composition Activations")
class PolyNormMLP(_PolyMLP):
    activation = PolyNorm


@register("polyrelu", task=ANY_TASK, kind="ffn", paper="Zhuo et al. 2024, Polynomial Composition Activations")
class PolyReLUMLP(_PolyMLP):
    activation = PolyReLU
