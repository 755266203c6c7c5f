"""DLinear (Zeng et al. AAAI 2023, "Are Transformers Effective for Time Series Forecasting?").

    trend    = moving_average_k(x)        (edges padded by repeating the end values)
    seasonal = x - trend
    forecast = W_s seasonal + W_t trend    (linear maps over time, L -> H, per channel)

Shared maps across channels by default; `individual=True` gives each channel its own pair.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.registry import register


class MovingAverage(nn.Module):
    """Mean over a window of `kernel` steps centred on each step of [B,L,C]; length is kept."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        front, back = (self.kernel - 1) // 2, self.kernel // 2
        padded = torch.cat([x[:, :1].expand(-1, front, -1), x, x[:, -1:].expand(-1, back, -1)], dim=1)
        return F.avg_pool1d(padded.transpose(1, 2), self.kernel, stride=1).transpose(1, 2)


@register("dlinear", task="timeseries", paper="Zeng et al. AAAI 2023")
class DLinear(nn.Module):
    def __init__(self, lookback: int, horizon: int, channels: int, kernel: int = 25, individual: bool = False):
        """kernel: moving-average window (steps) of the trend/seasonal decomposition; individual: one pair of
        linear maps per channel instead of shared ones."""
        super().__init__()
        self.decompose = MovingAverage(kernel)
        n = channels if individual else 1
        self.individual = individual
        self.seasonal = nn.ModuleList(nn.Linear(lookback, horizon) for _ in range(n))
        self.trend = nn.ModuleList(nn.Linear(lookback, horizon) for _ in range(n))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in [*self.seasonal, *self.trend]:
            # Start as "repeat the lookback mean", as the reference implementation does.
            nn.init.constant_(lin.weight, 1.0 / lin.in_features)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,L,C] -> [B,H,C]
        trend = self.decompose(x)
        seasonal, trend = (x - trend).transpose(1, 2), trend.transpose(1, 2)  # [B,C,L]
        if self.individual:
            out = torch.stack([s(seasonal[:, c]) + t(trend[:, c])
                               for c, (s, t) in enumerate(zip(self.seasonal, self.trend))], dim=1)
        else:
            out = self.seasonal[0](seasonal) + self.trend[0](trend)
        return out.transpose(1, 2)
