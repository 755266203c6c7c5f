"""Time-series views: crop + resample, per-channel scaling and jitter, for a whole batch at once.

A window x[L,C] of a forecasting DataModule (its input; the forecast target is not used)
gets, per item and independently for each view (TS2Vec's cropping, TS-TCC's weak
augmentation):
- crop: a sub-window of a share u ~ U(crop, 1) of L at a uniform position, resampled back to
  L steps by linear interpolation (crop=1 leaves the window whole)
- scaling: every channel times its own factor ~ N(1, scaling)
- jitter: plus Gaussian noise of standard deviation `jitter` (the data are z-scored)

Forecasting data carry no class labels, so `y` is -1 and only the loss is monitored; series
classification data (series_classes, ucr) keep their labels: kNN and linear-probe accuracy.

"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.data import Dataset, TensorDataset

from labformer.data.contrastive.views.base import ViewDataset, reject_unknown, share
from labformer.errors import UserError
from labformer.registry import register


def crop_resample(x: torch.Tensor, share_kept: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Resample x[B,L,C]: item b keeps the span of `share_kept[b]` of its length starting at
    `offset[b]` (in [0, 1]) of the free room, stretched back to L steps by linear interpolation."""
    b, length, _ = x.shape
    if length < 2:
        return x
    span = share_kept.to(x.dtype) * (length - 1)  # in steps
    start = offset.to(x.dtype) * (length - 1 - span)
    pos = start[:, None] + span[:, None] * torch.linspace(0, 1, length, dtype=x.dtype)  # [B, L]
    left = pos.floor().long().clamp(0, length - 2)
    w = (pos - left).unsqueeze(-1)
    gather = lambda i: x.gather(1, i.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # noqa: E731
    return gather(left) * (1 - w) + gather(left + 1) * w


class SeriesViews:
    def __init__(self, jitter: float = 0.1, scaling: float = 0.1, crop: float = 0.8) -> None:
        if jitter < 0 or scaling < 0:
            raise UserError(f"task.views.jitter={jitter} and task.views.scaling={scaling} must be >= 0")
        self.jitter, self.scaling, self.crop = float(jitter), float(scaling), share("crop", crop, low_open=True)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, _, c = x.shape
        if self.crop < 1:
            kept = self.crop + (1 - self.crop) * torch.rand(b, generator=generator)
            x = crop_resample(x, kept, torch.rand(b, generator=generator))
        if self.scaling > 0:
            x = x * (1 + self.scaling * torch.randn(b, 1, c, generator=generator))
        if self.jitter > 0:
            x = x + self.jitter * torch.randn(x.shape, generator=generator)
        return x


def window_fetcher(data: Dataset) -> Callable[[torch.Tensor], torch.Tensor]:
    """indices -> input windows x[B,L,C] of a forecasting split, without copying the split."""
    series = getattr(data, "series", None)
    if series is not None and hasattr(data, "lookback"):  # WindowDataset: strided views of one series
        windows = series.unfold(0, data.lookback, 1)  # [T-L+1, C, L], no copy
        return lambda idx: windows[idx].transpose(1, 2).contiguous()
    if isinstance(data, TensorDataset):  # i.i.d. windows (synthetic_linear)
        return lambda idx: data.tensors[0][idx]
    return lambda idx: torch.stack([data[int(i)][0] for i in idx])


@register("timeseries", task="contrastive", kind="views")
class SeriesViewAdapter:
    """Views of a forecasting DataModule's windows (its `sets`: train/val/test)."""

    labelled = False  # forecasting windows, known before any data is read: no kNN accuracy, only the loss

    def __init__(self, base, jitter: float = 0.1, scaling: float = 0.1, crop: float = 0.8, **unknown: Any) -> None:
        reject_unknown("timeseries", unknown, ("jitter", "scaling", "crop"), "jitter=0.05")
        self.base = base
        self.labelled = getattr(base, "objective", "forecast") == "classification"  # declared, not read
        self.views = SeriesViews(jitter, scaling, crop)

    def split(self, name: str) -> tuple[Dataset, torch.Tensor]:
        self.base.setup()
        data = self.base.sets[name]
        if self.labelled:  # (x, y) TensorDatasets of the classification DataModules
            return data, data.tensors[1]
        return data, torch.full((len(data),), -1, dtype=torch.long)

    def dataset(self, split: str, clean: bool, seed: int | None, augment: bool = True) -> Dataset:
        data, labels = self.split(split)
        return ViewDataset(window_fetcher(data), labels, self.views, clean=clean, seed=seed, augment=augment)

    @staticmethod
    def collate(batch: dict[str, Any]) -> dict[str, Any]:
        return batch  # assembled by the dataset
