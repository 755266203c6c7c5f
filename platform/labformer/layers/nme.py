"""Numerically multi-scaled embedding (NME; Lin et al. TMLR 2024, "NuTime"): scalars of any magnitude -> [D].

A scalar x goes through K branches, one per numerical scale e_k (by default 10^-4 .. 10^4); each
branch embeds x in units of its scale and bounds the result, and the branches are mixed by how
well each scale fits |x|:

    y_k(x)   = bound(w_k * x / e_k + b_k)                                   w_k, b_k in R^D
    a_k(x)   = 1 / (|log(|x| / e_k + eps)| + eps),   alpha_k = a_k / sum_j a_j
    NME(x)   = sum_k alpha_k(x) y_k(x)

bound: `layernorm` (the paper's and its code's block, LN without affine: LN(w x + e_k b) is the same
map), `tanh` or `clip` (to [-1, 1]). One linear map of a raw scalar would saturate the bound for
large |x| (1e3 and 2e3 alike) or stay flat near 0 for small |x|; the scale whose unit matches |x|
keeps it in the bound's sensitive range, and the weights favour that branch.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError

BOUNDS = ("layernorm", "tanh", "clip")


def default_scales(num_scales: int = 9, base: float = 10.0) -> list[float]:
    """base^-m .. base^m around 1 (m = (num_scales - 1) / 2): the paper's 9 scales are 1e-4 .. 1e4."""
    if num_scales < 1 or base <= 1:
        raise UserError(f"NME needs num_scales >= 1 and scale_base > 1 (got {num_scales}, {base})")
    low = -((num_scales - 1) // 2)
    return [float(base) ** i for i in range(low, low + num_scales)]


def scale_weights(x: torch.Tensor, scales: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """alpha [..., K]: each scale's share for x [...], larger the closer |x| is to e_k on a log axis."""
    fit = 1.0 / (torch.log(x.abs()[..., None] / scales + eps).abs() + eps)
    return fit / fit.sum(-1, keepdim=True)


class NumericallyMultiScaledEmbedding(nn.Module):
    def __init__(self, dim: int, scales: Sequence[float] | None = None, bound: str = "layernorm",
                 eps: float = 1e-6) -> None:
        """dim: embedding width D; scales: the e_k (default: 10^-4 .. 10^4); bound: layernorm | tanh | clip."""
        super().__init__()
        if bound not in BOUNDS:
            raise UserError(f"NME bound={bound!r} is unknown; use one of {', '.join(BOUNDS)}")
        scales = list(scales) if scales is not None else default_scales()
        if not scales or min(scales) <= 0:
            raise UserError(f"NME scales must be positive numbers, got {scales}")
        self.dim, self.bound, self.eps = dim, bound, eps
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float32), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(scales), dim))
        self.bias = nn.Parameter(torch.empty(len(scales), dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # U(-1, 1) as the reference code: every branch starts with a spread of slopes and offsets.
        nn.init.uniform_(self.weight, -1.0, 1.0)
        nn.init.uniform_(self.bias, -1.0, 1.0)

    def branches(self, x: torch.Tensor) -> torch.Tensor:
        """y_k(x) [..., K, D] for x [...]."""
        u = (x[..., None] / self.scales)[..., None] * self.weight + self.bias
        if self.bound == "layernorm":
            return F.layer_norm(u, (self.dim,))
        return torch.tanh(u) if self.bound == "tanh" else u.clamp(-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [...] -> [..., D]
        alpha = scale_weights(x, self.scales, self.eps).to(x.dtype)
        return (alpha[..., None] * self.branches(x)).sum(-2)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scales={[f'{s:g}' for s in self.scales.tolist()]}, bound={self.bound}"
