"""Embedded forecasting data, generated from a seed: no file, no download.

- `synthetic_seasonal` (the family's default): a multivariate series with several seasonal
  periods, a trend, autocorrelated noise and channels that lag shared drivers, so both
  temporal and cross-channel structure are there to learn; split 70/10/20 in time and
  scaled like a CSV.
- `synthetic_linear`: SAMformer's toy problem (Ilbert et al. ICML 2024, Sec. 2): i.i.d.
  windows x[L,C] ~ N(0,1) and targets y = W^T x (+ noise) per channel with one random
  W[L,H]. A linear model solves it exactly, yet a transformer trained plainly settles in
  a sharp, worse minimum; sharpness-aware minimisation closes most of the gap.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from typing import Any

from labformer.data.timeseries.base import ForecastDataModule, SeriesDataModule
from labformer.errors import UserError
from labformer.registry import register


def seasonal_series(length: int, channels: int, periods: tuple[int, ...] = (24, 168, 12), seed: int = 0,
                    noise: float = 0.3, max_lag: int = 12) -> np.ndarray:
    """A [length, channels] series: lagged mixtures of periodic drivers + trend + AR(1) noise."""
    rng = np.random.RandomState(seed)  # frozen stream: same series on every NumPy version
    t = np.arange(length + max_lag, dtype=np.float64)
    n_drivers = max(2, len(periods))
    drivers = np.zeros((n_drivers, len(t)))
    for k in range(n_drivers):
        for p in periods:
            drivers[k] += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * t / p + rng.uniform(0, 2 * np.pi))
    series = np.zeros((length, channels))
    for c in range(channels):
        lag = rng.randint(0, max_lag + 1)  # channel c follows the drivers `lag` steps late
        mix = rng.normal(size=n_drivers)
        series[:, c] = mix @ drivers[:, max_lag - lag: max_lag - lag + length]
        series[:, c] += rng.uniform(-2, 2) * np.arange(length) / length  # trend
        shocks = rng.normal(scale=noise, size=length)
        ar = np.zeros(length)
        for i in range(1, length):  # AR(1): noise a forecaster can partly predict
            ar[i] = 0.7 * ar[i - 1] + shocks[i]
        series[:, c] += ar + rng.uniform(-5, 5)  # and a level of its own
    return series


# Horizon 48 and batches of 64: the family's default run stays short on a CPU.
@register("synthetic_seasonal", task="timeseries", kind="dataset", embedded=True,
          args=dict(horizon=48, batch_size=64))
class SeasonalDataModule(SeriesDataModule):
    """Periods 24/168/12, a trend, AR noise and lagged channels; `length` rows split 70/10/20 in time."""

    name = "synthetic_seasonal"

    def __init__(self, channels: int = 7, length: int = 4000, seed: int = 0, noise: float = 0.3, **base: Any) -> None:
        """seed: of the generated series (fixed, so every run sees the same data)."""
        self.channels = channels
        super().__init__(**base)
        if length < 3 * (self.lookback + self.horizon):
            raise UserError(f"data.length={length} is too short for lookback {self.lookback} + horizon "
                            f"{self.horizon}; use data.length>={3 * (self.lookback + self.horizon) * 4}.")
        self.length, self.seed, self.noise = length, seed, noise

    def read(self) -> np.ndarray:
        return seasonal_series(self.length, self.channels, seed=self.seed, noise=self.noise)


def linear_problem(n: int, lookback: int, horizon: int, channels: int, weights: torch.Tensor, noise: float,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, lookback, channels, generator=generator)
    y = torch.einsum("nlc,lh->nhc", x, weights)
    return x, y + noise * torch.randn(y.shape, generator=generator)


# The paper's lookback of 512.
@register("synthetic_linear", task="timeseries", kind="dataset", embedded=True, args=dict(lookback=512))
class LinearToyDataModule(ForecastDataModule):
    """SAMformer's toy problem: i.i.d. windows x ~ N(0,1), y = W^T x per channel with one random W[L,H]."""

    name = "synthetic_linear"

    def __init__(self, channels: int = 7, num_train: int = 10000, num_val: int = 1000, num_test: int = 1000,
                 noise: float = 0.0, seed: int = 0, **base: Any) -> None:
        self.channels = channels
        super().__init__(**base)
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.noise, self.seed = noise, seed

    def load(self) -> dict[str, Dataset]:
        g = torch.Generator().manual_seed(self.seed)
        # Variance-preserving map: each target has unit variance, like the inputs.
        self.weights = torch.randn(self.lookback, self.horizon, generator=g) / self.lookback ** 0.5
        return {split: TensorDataset(*linear_problem(n, self.lookback, self.horizon, self.channels, self.weights,
                                                     self.noise, g))
                for split, n in self.sizes.items()}
