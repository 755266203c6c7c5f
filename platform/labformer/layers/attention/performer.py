"""Performer / FAVOR+ (Choromanski et al. 2021): softmax attention through positive random features.

    exp(q^T k) = E_w[ phi(q) phi(k) ],   phi(x) = exp(W x - |x|^2 / 2) / sqrt(m),   w_r ~ N(0, I_d)

with q, k scaled by d^(-1/4) so q^T k carries softmax's 1/sqrt(d). The m rows of W are
orthogonal in blocks of d (lower variance) with Gaussian-like norms. The attention is then
linear in T (`kernels.linear_attention`); causal through prefix sums. The estimate
converges to softmax attention as m grows.

Stability: a common factor of all keys (or of one query) cancels in the normalised
ratio, so each query is shifted by its own max, and keys by the bound
w^T k - |k|^2/2 <= |w|^2/2 when causal (a data-independent constant keeps position t free of
later keys), or by their max over the sequence when not.
"""
from __future__ import annotations

import torch

from labformer.errors import UserError
from labformer.layers.attention.base import QKVAttention
from labformer.layers.attention.kernels import linear_attention
from labformer.layers.build import ANY_TASK
from labformer.registry import register


def orthogonal_features(m: int, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[m, d]: blocks of d orthogonal rows, each row rescaled to the norm of a N(0, I_d) draw."""
    blocks = []
    for _ in range(-(-m // d)):
        g = torch.randn(d, d, generator=generator)
        q, _ = torch.linalg.qr(g)
        blocks.append(q.T)
    w = torch.cat(blocks)[:m]
    norms = torch.randn(m, d, generator=generator).norm(dim=1, keepdim=True)
    return w * norms


def favor_features(x: torch.Tensor, w: torch.Tensor, is_query: bool, causal: bool) -> torch.Tensor:
    """phi(x) for x [B,H,T,d] (already scaled by d^-1/4) and features w [m, d] -> [B,H,T,m]."""
    proj = x @ w.T - x.pow(2).sum(-1, keepdim=True) / 2
    if is_query:
        shift = proj.amax(-1, keepdim=True)
    elif causal:
        shift = w.pow(2).sum(-1).max() / 2
    else:
        shift = proj.amax(dim=(-2, -1), keepdim=True)
    return torch.exp(proj - shift.detach()) / w.shape[0] ** 0.5


@register("performer", task=ANY_TASK, kind="attention", causal=True, complexity="O(T m d)",
          paper="Choromanski et al. 2021, Rethinking Attention with Performers")
class PerformerAttention(QKVAttention):
    def __init__(self, dim: int, num_heads: int, causal: bool = False, max_len: int = 1024, dropout: float = 0.0,
                 bias: bool = True, num_features: int = 64, redraw: bool = False, chunk: int = 64) -> None:
        super().__init__(dim, num_heads, causal, max_len, dropout, bias)
        if num_features < 1:
            raise UserError(f"performer num_features must be >= 1, got {num_features}")
        self.num_features, self.redraw, self.chunk = num_features, redraw, chunk
        # Persistent: the features are part of the trained model (eval must use the same ones).
        self.register_buffer("features", orthogonal_features(num_features, self.head_dim))

    def redraw_features(self) -> None:
        self.features.copy_(orthogonal_features(self.num_features, self.head_dim).to(self.features))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.redraw and self.training:
            self.redraw_features()
        scale = self.head_dim ** -0.25
        w = self.features.to(q.dtype)
        phi_q = favor_features(q * scale, w, is_query=True, causal=self.causal)
        phi_k = favor_features(k * scale, w, is_query=False, causal=self.causal)
        # eps=0: the keys' common factor exp(-|w|^2/2) may be far below any fixed eps.
        return linear_attention(phi_q, phi_k, v, self.causal, normalize=True, eps=0.0, chunk=self.chunk)
