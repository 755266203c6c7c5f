"""Kernelised (linear) attention given feature maps phi(q), phi(k): shared by `linear` and `performer`.

    non-causal: out_i = phi(q_i)^T S / phi(q_i)^T z,      S = sum_j phi(k_j) v_j^T,  z = sum_j phi(k_j)
    causal:     the same with S_i, z_i summed over j <= i (prefix sums)

The causal form runs chunk by chunk (Katharopoulos et al. 2020; chunked as in e.g. GLA):
inside a chunk of C positions the masked quadratic form, across chunks the prefix state,
so memory is O(T/C * F * Dv + T * C) instead of the O(T * F * Dv) of a plain cumsum.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_attention(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, causal: bool,
                     normalize: bool = True, eps: float = 1e-6, chunk: int = 64) -> torch.Tensor:
    """phi_q, phi_k [B,H,T,F], v [B,H,T,Dv] -> [B,H,T,Dv]. `normalize=False` drops the denominator.

    `eps` is added to the denominator; eps=0 (for strictly positive features whose common
    scale may be tiny, e.g. FAVOR+) only guards against an exact zero.
    """
    if not causal:
        out = phi_q @ (phi_k.transpose(-1, -2) @ v)
        if normalize:
            out = out / _guard(phi_q @ phi_k.sum(-2, keepdim=True).transpose(-1, -2), eps)
        return out
    b, h, t, f = phi_q.shape
    c = max(1, min(chunk, t))
    pad = (-t) % c
    if pad:  # zero keys/values add nothing to the sums; padded queries are cut off below
        phi_q, phi_k, v = (F.pad(x, (0, 0, 0, pad)) for x in (phi_q, phi_k, v))
    n = (t + pad) // c
    q = phi_q.view(b, h, n, c, f)
    k = phi_k.view(b, h, n, c, f)
    vv = v.view(b, h, n, c, -1)
    kv = k.transpose(-1, -2) @ vv  # [B,H,n,F,Dv]: each chunk's contribution
    # Exclusive prefix over chunks (shift, then cumsum): chunk c sees chunks < c only, exactly.
    state = F.pad(kv, (0, 0, 0, 0, 1, 0))[:, :, :-1].cumsum(2)
    scores = (q @ k.transpose(-1, -2)).tril()  # [B,H,n,C,C], j <= i inside the chunk
    out = q @ state + scores @ vv
    if normalize:
        ksum = k.sum(-2)  # [B,H,n,F]
        z = F.pad(ksum, (0, 0, 1, 0))[:, :, :-1].cumsum(2)
        den = (q * z.unsqueeze(-2)).sum(-1) + scores.sum(-1)
        out = out / _guard(den.unsqueeze(-1), eps)
    return out.reshape(b, h, n * c, -1)[:, :, :t]


def _guard(den: torch.Tensor, eps: float) -> torch.Tensor:
    return den + eps if eps > 0 else den.clamp_min(torch.finfo(den.dtype).tiny)


def quadratic_attention(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, causal: bool,
                        normalize: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """The same quantity as `linear_attention`, through the explicit T x T matrix (for tests)."""
    a = phi_q @ phi_k.transpose(-1, -2)
    if causal:
        a = a.tril()
    out = a @ v
    return out / _guard(a.sum(-1, keepdim=True), eps) if normalize else out
