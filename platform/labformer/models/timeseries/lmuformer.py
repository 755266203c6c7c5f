"""An LMUFormer-style recurrent forecaster (Liu et al. ICLR 2024, "LMUFormer: Low Complexity, Yet
Powerful Spiking Model With Legendre Memory Units"), built on the Legendre Memory Unit
(Voelker et al. NeurIPS 2019).

An LMU keeps a sliding window of `theta` steps of its input u as `order` Legendre coefficients:

    m_t = A_d m_{t-1} + B_d u_t,   (A, B) the Legendre delay system, discretised by zero-order hold
    A_ij = (2i+1)/theta * (-1 if i < j else (-1)^(i-j+1)),   B_i = (2i+1)(-1)^i / theta

The recurrence is linear, so the whole sequence's memory is a causal convolution of u with
the impulse response A_d^t B_d (computed once, applied by FFT: parallel training, recurrent
semantics). Each block: u = W_u x; h = GELU(W_h [m; x]); x = norm(x + h); x = norm(x + MLP(x)).
Time steps are tokens (channels embedded together), inside RevIN; a linear map over time
gives the horizon.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.layers.revin import RevIN
from labformer.registry import register


def legendre_system(order: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A_d [order,order], B_d [order]) of the discretised Legendre delay system, in float64."""
    i = torch.arange(order, dtype=torch.float64)[:, None]
    j = torch.arange(order, dtype=torch.float64)[None, :]
    a = (2 * i + 1) / theta * torch.where(i < j, -1.0, (-1.0) ** (i - j + 1))
    b = (2 * torch.arange(order, dtype=torch.float64) + 1) * (-1.0) ** torch.arange(order) / theta
    # Zero-order hold with dt = 1: expm([[A, B], [0, 0]]) = [[A_d, B_d], [0, 1]].
    block = torch.zeros(order + 1, order + 1, dtype=torch.float64)
    block[:order, :order], block[:order, order] = a, b
    ad_bd = torch.linalg.matrix_exp(block)
    return ad_bd[:order, :order], ad_bd[:order, order]


def legendre_impulse_response(order: int, theta: float, length: int) -> torch.Tensor:
    """[length, order]: row t is A_d^t B_d, the memory's response to a unit input t steps ago."""
    a_d, b_d = legendre_system(order, theta)
    rows, state = [], b_d
    for _ in range(length):
        rows.append(state)
        state = a_d @ state
    return torch.stack(rows).float()


class LMUBlock(nn.Module):
    def __init__(self, dim: int, memory_dim: int, order: int, theta: float, length: int, ffn_dim: int,
                 dropout: float) -> None:
        super().__init__()
        self.to_u = nn.Linear(dim, memory_dim)
        self.register_buffer("impulse", legendre_impulse_response(order, theta, length), persistent=False)
        self.hidden = nn.Linear(memory_dim * order + dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def memory(self, u: torch.Tensor) -> torch.Tensor:
        """u [B,L,m] -> Legendre memories [B,L,m*order] (the recurrence, as one causal FFT convolution)."""
        b, length, m = u.shape
        n = 2 * length  # zero padding: linear, not circular, convolution
        spectrum = torch.fft.rfft(u.transpose(1, 2).float(), n=n)[:, :, None, :]  # [B,m,1,F]
        response = torch.fft.rfft(self.impulse[:length].T, n=n)[None, None]  # [1,1,order,F]
        mem = torch.fft.irfft(spectrum * response, n=n)[..., :length]  # [B,m,order,L]
        return mem.permute(0, 3, 1, 2).reshape(b, length, -1).to(u.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.memory(self.to_u(x))
        x = self.norm1(x + self.drop(F.gelu(self.hidden(torch.cat([m, x], dim=-1)))))
        return self.norm2(x + self.drop(self.mlp(x)))


@register("lmuformer", task="timeseries", paper="Liu et al. ICLR 2024 (LMU: Voelker et al. 2019)")
class LMUFormer(nn.Module):
    def __init__(self, lookback: int, horizon: int, channels: int, dim: int = 64, depth: int = 2,
                 memory_dim: int = 4, order: int = 32, theta: float | None = None, ffn_dim: int = 128,
                 dropout: float = 0.1, use_revin: bool = True) -> None:
        """memory_dim: inputs the LMU memorises per block; order: Legendre coefficients kept per input (memory
        resolution); theta: window the memory covers, in steps (None: the lookback)."""
        super().__init__()
        self.revin = RevIN(channels) if use_revin else None
        self.embed = nn.Linear(channels, dim)
        theta = float(theta or lookback)  # by default the memory spans the whole lookback
        self.blocks = nn.ModuleList(LMUBlock(dim, memory_dim, order, theta, lookback, ffn_dim, dropout)
                                    for _ in range(depth))
        self.over_time = nn.Linear(lookback, horizon)
        self.out = nn.Linear(dim, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,L,C] -> [B,H,C]
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        z = self.embed(x)
        for block in self.blocks:
            z = block(z)
        y = self.out(self.over_time(z.transpose(1, 2)).transpose(1, 2))
        return self.revin.denormalize(y, stats) if self.revin is not None else y
