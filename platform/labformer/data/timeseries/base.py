"""The forecasting DataModule contract and what every series dataset shares.

Datasets: ETT h1/h2/m1/m2 (ett.py), any CSV (csv_series.py), two generated series (synthetic.py).

Contract (the time-series task and the backbone builders rely on it): right after
`__init__`, before any file is read, a DataModule knows `name`, `lookback` (L),
`horizon` (H) and `channels` (C); batches are `(x[B,L,C], y[B,H,C])` in scaled units.

Protocol of the published long-horizon tables (Informer, Autoformer, DLinear, PatchTST,
iTransformer, SAMformer): chronological splits where validation and test start L rows
before their first target so every target row is forecast; a StandardScaler fitted on the
training rows only; every window of stride 1, i.e. T - L - H + 1 windows from T rows.
Those papers' test loader drops the last incomplete batch (batch 32); here the test loader
keeps every window unless `test_drop_last=true`, and the task names the protocol in
the test metrics' names.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from labformer.errors import UserError


class StandardScaler:
    """Per-channel z-scoring; `fit` is only ever given training rows."""

    def fit(self, rows: np.ndarray) -> "StandardScaler":
        self.mean = rows.mean(axis=0)
        std = rows.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)  # a constant channel stays finite
        self.fitted_rows = len(rows)
        return self

    def transform(self, rows: np.ndarray) -> np.ndarray:
        return (rows - self.mean) / self.std

    def inverse_transform(self, rows: np.ndarray) -> np.ndarray:
        return rows * self.std + self.mean


class WindowDataset(Dataset):
    """All stride-1 windows of a scaled series [T,C]: item i = (rows i..i+L-1, rows i+L..i+L+H-1)."""

    def __init__(self, series: np.ndarray, lookback: int, horizon: int) -> None:
        self.series = torch.as_tensor(np.ascontiguousarray(series), dtype=torch.float32)
        self.lookback, self.horizon = lookback, horizon

    def __len__(self) -> int:
        return max(0, len(self.series) - self.lookback - self.horizon + 1)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j = i + self.lookback
        return self.series[i:j], self.series[j:j + self.horizon]


def split_borders(n_rows: int, lookback: int, train: int, val: int, test: int) -> dict[str, tuple[int, int]]:
    """Row ranges [start, end) per split; val/test begin `lookback` rows early (their first input)."""
    return {"train": (0, train), "val": (train - lookback, train + val),
            "test": (train + val - lookback, min(n_rows, train + val + test))}


def ratio_borders(n_rows: int, lookback: int, train: float = 0.7, test: float = 0.2) -> dict[str, tuple[int, int]]:
    """The 70/10/20 split of the custom-CSV convention (Autoformer): test is the last 20%."""
    n_train, n_test = int(n_rows * train), int(n_rows * test)
    return split_borders(n_rows, lookback, n_train, n_rows - n_train - n_test, n_test)


class ForecastDataModule(L.LightningDataModule):
    """Loaders shared by every forecasting dataset; subclasses build `self.sets` in `load()`."""

    name = "forecast"
    channels: int  # C: set by the subclass before calling this constructor (from its files or settings)
    split_protocol = "i.i.d. windows"  # how the splits are cut, stated in the run's log

    def __init__(self, data_dir: str = "data", lookback: int = 96, horizon: int = 96, batch_size: int = 32,
                 num_workers: int = 0, test_drop_last: bool = False) -> None:
        """lookback L: input steps; horizon H: forecast steps; batch_size: the published tables use 32;
        test_drop_last: the published tables' test loader, which drops the last incomplete batch (metrics get
        `_drop_last`)."""
        super().__init__()
        for key, value, ok in (("lookback", lookback, lookback >= 1), ("horizon", horizon, horizon >= 1),
                               ("batch_size", batch_size, batch_size >= 1),
                               ("num_workers", num_workers, num_workers >= 0)):
            if not ok:
                raise UserError(f"data.{key}={value!r} is out of range for dataset '{self.name}'. "
                                "Fix: lookback>=1, horizon>=1, batch_size>=1, num_workers>=0.")
        self.data_dir = Path(data_dir).expanduser()
        self.lookback, self.horizon = lookback, horizon
        self.batch_size, self.num_workers, self.test_drop_last = batch_size, num_workers, test_drop_last
        self.sets: dict[str, Dataset] = {}

    def load(self) -> dict[str, Dataset]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self.sets:  # read once; every stage reuses it
            self.sets = self.load()
            for split, ds in self.sets.items():
                if len(ds) == 0:
                    raise UserError(f"dataset '{self.name}': the {split} split has no window of lookback "
                                    f"{self.lookback} + horizon {self.horizon}. Fix: smaller data.lookback "
                                    "or data.horizon, or a longer series.")

    def _loader(self, split: str, shuffle: bool = False, drop_last: bool = False) -> DataLoader:
        self.setup()
        return DataLoader(self.sets[split], batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", drop_last=self.test_drop_last)

    @property
    def protocol(self) -> str:
        """How the splits are cut, and which windows the test metrics cover: every one, or the published
        tables' loader."""
        windows = f"drop_last (batch {self.batch_size})" if self.test_drop_last else "all windows"
        return f"{self.split_protocol}; test windows: {windows}"

    def describe(self) -> str:
        sizes = " / ".join(f"{k} {len(v)}" for k, v in self.sets.items()) if self.sets else "not loaded yet"
        return (f"{self.name}: {sizes} windows, lookback {self.lookback}, horizon {self.horizon}, "
                f"{self.channels} channels, test protocol: {self.protocol}")

    __str__ = __repr__ = describe  # LightningDataModule.__str__ would build every loader


class SeriesDataModule(ForecastDataModule):
    """One multivariate series [T,C] split chronologically, scaled with training statistics."""

    split_protocol = ("70/10/20 by time, val/test starting a lookback early, scaler fitted on the training rows "
                      "(Time-Series-Library's `custom`)")

    def read(self) -> np.ndarray:
        """The raw series [T,C] (float)."""
        raise NotImplementedError

    def borders(self, n_rows: int) -> dict[str, tuple[int, int]]:
        return ratio_borders(n_rows, self.lookback)

    def load(self) -> dict[str, Dataset]:
        raw = self.read().astype(np.float64)
        if raw.ndim != 2 or raw.shape[1] != self.channels:
            raise UserError(f"dataset '{self.name}' gave a series of shape {raw.shape}, expected [T, {self.channels}].")
        self.split_rows = self.borders(len(raw))
        start, end = self.split_rows["train"]
        self.scaler = StandardScaler().fit(raw[start:end])  # training rows only: no look-ahead
        scaled = self.scaler.transform(raw).astype(np.float32)
        return {s: WindowDataset(scaled[a:b], self.lookback, self.horizon) for s, (a, b) in self.split_rows.items()}


# ---------------------------------------------------------------------------------------------
def read_csv_columns(path: Path, columns: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(names, values [T,C]) of a CSV whose first column is the timestamp; `columns` picks variables."""
    header = ["date"] + header_columns(path)
    variables = header[1:]
    wanted = variables if columns is None else list(columns)
    unknown = [c for c in wanted if c not in variables]
    if unknown:
        raise UserError(f"{path}: no column(s) {unknown}; the file has {variables}. Fix: data.columns / data.target.")
    try:
        values = np.loadtxt(path, delimiter=",", skiprows=1, usecols=[header.index(c) for c in wanted],
                            dtype=np.float64, ndmin=2, encoding="latin-1")
    except ValueError as e:
        raise UserError(f"{path}: not a numeric CSV after its timestamp column ({e}).") from e
    return wanted, values


def header_columns(path: Path) -> list[str]:
    """The variables' names. Weather's header writes units in Latin-1 (W/m\u00b2, \u00b5mol): a name that is not
    UTF-8 is read as Latin-1, so data.target/columns spell it as printed in the error of a wrong name."""
    with open(path, "rb") as f:
        line = f.readline()
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        text = line.decode("latin-1")
    return text.strip().split(",")[1:]
