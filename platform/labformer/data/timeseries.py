"""Time-series forecasting DataModules: ETT (h1, h2, m1, m2), any CSV, and two embedded series.

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
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from labformer.data.files import RemoteFile, locate
from labformer.errors import UserError
from labformer.registry import register


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

    def __init__(self, data_dir: str, lookback: int, horizon: int, channels: int, batch_size: int = 32,
                 num_workers: int = 0, test_drop_last: bool = False) -> None:
        super().__init__()
        for key, value, ok in (("lookback", lookback, lookback >= 1), ("horizon", horizon, horizon >= 1),
                               ("batch_size", batch_size, batch_size >= 1),
                               ("num_workers", num_workers, num_workers >= 0)):
            if not ok:
                raise UserError(f"data.{key}={value!r} is out of range for dataset '{self.name}'. "
                                "Fix: lookback>=1, horizon>=1, batch_size>=1, num_workers>=0.")
        self.data_dir = Path(data_dir).expanduser()
        self.lookback, self.horizon, self.channels = lookback, horizon, channels
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
        """Which windows the test metrics cover: every one, or the published tables' loader."""
        return f"drop_last (batch {self.batch_size})" if self.test_drop_last else "all windows"

    def describe(self) -> str:
        sizes = " / ".join(f"{k} {len(v)}" for k, v in self.sets.items()) if self.sets else "not loaded yet"
        return (f"{self.name}: {sizes} windows, lookback {self.lookback}, horizon {self.horizon}, "
                f"{self.channels} channels, test protocol: {self.protocol}")

    __str__ = __repr__ = describe  # LightningDataModule.__str__ would build every loader


class SeriesDataModule(ForecastDataModule):
    """One multivariate series [T,C] split chronologically, scaled with training statistics."""

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
    with open(path) as f:
        header = f.readline().strip().split(",")
    variables = header[1:]
    wanted = variables if columns is None else list(columns)
    unknown = [c for c in wanted if c not in variables]
    if unknown:
        raise UserError(f"{path}: no column(s) {unknown}; the file has {variables}. Fix: data.columns / data.target.")
    try:
        values = np.loadtxt(path, delimiter=",", skiprows=1, usecols=[header.index(c) for c in wanted],
                            dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise UserError(f"{path}: not a numeric CSV after its timestamp column ({e}).") from e
    return wanted, values


def header_columns(path: Path) -> list[str]:
    with open(path) as f:
        return f.readline().strip().split(",")[1:]


_ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/"
ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
ETT_SHA256 = {
    "ETTh1": "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
    "ETTh2": "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
    "ETTm1": "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",
    "ETTm2": "db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd",
}


class ETTDataModule(SeriesDataModule):
    """Electricity Transformer Temperature (Zhou et al. 2021): 7 loads/temperatures, `OT` the target.

    Split of the published tables: 12/4/4 months, i.e. rows [0, 8640) / [8640, 11520) /
    [11520, 14400) for the hourly files and 4x that for the 15-minute ones; the rows
    after 14400 (resp. 57600) are in no split.
    """

    DATASET_DIR = "ett"  # <data_dir>/ett/ETTh1.csv ...

    def __init__(self, file: str, data_dir: str, lookback: int, horizon: int, features: str = "M",
                 target: str = "OT", download: bool = True, **loader) -> None:
        if features not in ("M", "S"):
            raise UserError(f"data.features={features!r}: use M (all channels) or S (the target only).")
        if target not in ETT_COLUMNS:
            raise UserError(f"data.target={target!r} is not an ETT column; use one of {ETT_COLUMNS}.")
        self.name = file.lower()
        super().__init__(data_dir, lookback, horizon, len(ETT_COLUMNS) if features == "M" else 1, **loader)
        self.file, self.features, self.target, self.download = file, features, target, download
        self.rows_per_month = 30 * 24 * (4 if file.startswith("ETTm") else 1)

    def find(self) -> Path:
        remote = RemoteFile(f"{self.file}.csv", _ETT_URL + f"{self.file}.csv", ETT_SHA256[self.file])
        return locate(self.DATASET_DIR, [remote], self.data_dir, download=self.download) / remote.name

    def prepare_data(self) -> None:
        self.find()

    def read(self) -> np.ndarray:
        columns = ETT_COLUMNS if self.features == "M" else [self.target]
        return read_csv_columns(self.find(), columns)[1]

    def borders(self, n_rows: int) -> dict[str, tuple[int, int]]:
        m = self.rows_per_month
        if n_rows < 20 * m:
            raise UserError(f"{self.file}.csv has {n_rows} rows, fewer than the 20 months ({20 * m}) of the "
                            "standard split; the file is truncated: delete it and fetch it again.")
        return split_borders(n_rows, self.lookback, 12 * m, 4 * m, 4 * m)


class CSVDataModule(SeriesDataModule):
    """Any CSV `date,var1,var2,...` (the Autoformer 'custom' layout), split 70/10/20 in time."""

    name = "csv_series"

    def __init__(self, path: str | None, data_dir: str, lookback: int, horizon: int, features: str = "M",
                 target: str = "OT", columns: list[str] | None = None, **loader) -> None:
        if features not in ("M", "S"):
            raise UserError(f"data.features={features!r}: use M (all channels) or S (the target only).")
        if not path:
            raise UserError("dataset 'csv_series' needs data.path=<csv file> (absolute, or relative to the data "
                            f"directory {data_dir}); its first column is the timestamp.")
        file = Path(path).expanduser()
        self.path = file if file.is_absolute() else Path(data_dir).expanduser() / file
        if not self.path.is_file():
            raise UserError(f"data.path={path}: no file {self.path}. Fix: data.path=<csv file> (absolute, or "
                            f"relative to the data directory {data_dir}).")
        self.columns = [target] if features == "S" else (list(columns) if columns else None)
        # The only thing known before reading: the header line says how many variables there are.
        channels = len(self.columns) if self.columns else len(header_columns(self.path))
        super().__init__(data_dir, lookback, horizon, channels, **loader)

    def read(self) -> np.ndarray:
        return read_csv_columns(self.path, self.columns)[1]


# -- registered builders: their signatures are the config schema (conf/data/<name>.yaml) --
def _ett(file: str):
    def build(data_dir: str = "data", lookback: int = 96, horizon: int = 96,
              features: Literal["M", "S"] = "M", target: str = "OT", batch_size: int = 32,
              num_workers: int = 0, test_drop_last: bool = False, download: bool = True) -> ETTDataModule:
        return ETTDataModule(file, data_dir, lookback, horizon, features, target, download, batch_size=batch_size,
                             num_workers=num_workers, test_drop_last=test_drop_last)

    build.__name__ = file.lower()
    build.__doc__ = f"{file}: ETT-small/{file}.csv (7 variables), standard 12/4/4-month split."
    return build


for _file in ETT_SHA256:
    register(_file.lower(), task="timeseries", kind="dataset", embedded=False)(_ett(_file))


@register("csv_series", task="timeseries", kind="dataset", embedded=False)
def csv_series(path: str | None = None, data_dir: str = "data", lookback: int = 96, horizon: int = 96,
               features: Literal["M", "S"] = "M", target: str = "OT", columns: list[str] | None = None,
               batch_size: int = 32, num_workers: int = 0, test_drop_last: bool = False) -> CSVDataModule:
    return CSVDataModule(path, data_dir, lookback, horizon, features, target, columns, batch_size=batch_size,
                         num_workers=num_workers, test_drop_last=test_drop_last)


from labformer.data import timeseries_synthetic  # noqa: E402,F401  (registers the embedded series)
