"""Series classification data: one label per series, for the time-series task's classification mode.

Contract (beside the forecasting one in base.py): `objective = "classification"`, `num_classes`
(K), `lookback` (L, the series length), `channels` (C) and `horizon` = `feature_len`, the length
of the feature map a forecasting backbone is built to output before the task's linear head.
Batches are `(x[B,L,C] float, y[B] long)` with labels 0..K-1.

- `ucr`: a dataset of the UCR archive (2018), `<data_dir>/ucr/<Name>/<Name>_TRAIN.tsv` and
  `_TEST.tsv`, label first; validation is a stratified share of TRAIN, TEST stays the test set.
  Without the .tsv pair it reads `<Name>_TRAIN.ts` and `_TEST.ts` (ts_format.py: the .ts archive of
  timeseriesclassification.com, univariate or the multivariate UEA datasets, dimensions -> channels C).
- `series_classes` (embedded): sine / square / sawtooth / chirp series with random phase (within a quarter turn),
  frequency and noise, generated from a seed; no file.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from labformer.data.files import MissingDataError
from labformer.data.timeseries.ts_format import TS_URL, read_ts, ts_shape
from labformer.errors import UserError
from labformer.registry import register

UCR_URL = "https://www.cs.ucr.edu/~eamonn/time_series_data_2018/"
# Series lengths of a few common UCR datasets: the contract asks for L before any file is read.
UCR_LENGTHS = {"GunPoint": 150, "ECG200": 96, "Coffee": 286, "ItalyPowerDemand": 24, "TwoLeadECG": 82,
               "Wafer": 152, "FordA": 500, "ElectricDevices": 96, "SyntheticControl": 60, "Trace": 275}
SHAPES = ("sine", "square", "sawtooth", "chirp")


def znormalize(series: np.ndarray) -> np.ndarray:
    """Each row to mean 0, std 1 (the UCR convention); a constant row becomes zeros."""
    mean, std = series.mean(axis=1, keepdims=True), series.std(axis=1, keepdims=True)
    return (series - mean) / np.where(std > 0, std, 1.0)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: round(fraction * n_k) of each class k to validation, one always left to train."""
    rng = np.random.RandomState(seed)
    val = []
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        val.extend(idx[:min(len(idx) - 1, int(round(fraction * len(idx))))])
    val = np.sort(np.asarray(val, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), val), val


class SeriesClassificationDataModule(L.LightningDataModule):
    """Loaders and checks shared by the classification datasets; subclasses fill `self.arrays` in `load()`."""

    name = "series_classification"
    objective = "classification"  # read by the time-series task: pooled features + linear head
    test_drop_last = False
    num_classes: int
    lookback: int
    channels: int = 1

    def __init__(self, data_dir: str = "data", feature_len: int = 16, batch_size: int = 64,
                 num_workers: int = 0) -> None:
        """feature_len: length of the backbone's output map (its `horizon`) that the head reads, flattened."""
        super().__init__()
        for key, value in (("feature_len", feature_len), ("batch_size", batch_size)):
            if value < 1:
                raise UserError(f"data.{key}={value!r} is out of range for dataset '{self.name}'. Fix: {key}>=1.")
        self.data_dir = Path(data_dir).expanduser()
        self.horizon = feature_len  # the forecasting backbones' output length, used as features
        self.batch_size, self.num_workers = batch_size, num_workers
        self.sets: dict[str, TensorDataset] = {}

    def load(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        raise NotImplementedError

    def require_files(self) -> None:
        """A reader of files (`self.files`: split -> path) stops with its `missing()` message unless all exist."""
        if not all(p.is_file() for p in self.files.values()):
            self.missing()

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        for split, (x, y) in self.load().items():
            if len(y) == 0:
                raise UserError(f"dataset '{self.name}': the {split} split is empty. Fix: more series or another "
                                "data.val_fraction.")
            # [N, L] univariate -> [N, L, 1]: the backbones' x[B,L,C]
            x = x[..., None] if x.ndim == 2 else x
            self.sets[split] = TensorDataset(torch.as_tensor(x, dtype=torch.float32),
                                             torch.as_tensor(y, dtype=torch.long))

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        self.setup()
        return DataLoader(self.sets[split], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    @property
    def protocol(self) -> str:
        return "series classification: accuracy over every test series"

    def describe(self) -> str:
        if not self.sets:  # K may need the files (ucr): not before setup
            return f"{self.name}: not loaded yet, series of length {self.lookback}"
        sizes = " / ".join(f"{k} {len(v)}" for k, v in self.sets.items())
        return (f"{self.name}: {sizes} series of length {self.lookback}, {self.channels} channel(s), "
                f"{self.num_classes} classes")

    __str__ = __repr__ = describe


def read_ucr(path: Path) -> tuple[list[str], np.ndarray]:
    """(labels as written, series [N, L]) of one UCR text file: label first, tab- or comma-separated."""
    labels, rows = [], []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            fields = [v for v in re.split(r"[\t,]", line.strip()) if v != ""]
            if not fields:
                continue
            labels.append(fields[0])
            try:
                rows.append([float(v) for v in fields[1:]])
            except ValueError as e:
                raise UserError(f"{path}:{line_no}: not a number after the label ({e}).") from e
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise UserError(f"{path}: series of different lengths {sorted(lengths)}; use the archive's equal-length "
                        "version (Missing_value_and_variable_length_datasets_adjusted).")
    series = np.asarray(rows, dtype=np.float64)
    if np.isnan(series).any():  # the 2018 archive pads varying-length series with NaN
        raise UserError(f"{path}: has missing values (NaN); use the archive's equal-length version "
                        "(Missing_value_and_variable_length_datasets_adjusted).")
    return labels, series


def label_order(labels: list[str]) -> list[str]:
    """Sorted class names: numerically when every label is a number (so 10 follows 9), else as text."""
    unique = set(labels)
    try:
        return sorted(unique, key=float)
    except ValueError:
        return sorted(unique)


@register("ucr", task="timeseries", kind="dataset", embedded=False)
class UCRDataModule(SeriesClassificationDataModule):
    """A UCR archive dataset: <data_dir>/ucr/<dataset>/<dataset>_TRAIN.tsv and _TEST.tsv, or the .ts pair."""

    name = "ucr"

    def __init__(self, dataset: str = "GunPoint", val_fraction: float = 0.1, split_seed: int = 0,
                 normalize: bool = True, download: bool = False, data_dir: str = "data", **base: Any) -> None:
        """dataset: the archive's folder name (e.g. GunPoint, ECG200); val_fraction: stratified share of TRAIN
        kept for validation (seed split_seed); normalize: z-normalise each series; download: unsupported
        (the archive is password-protected: fetch it by hand)."""
        super().__init__(data_dir=data_dir, **base)
        if download:
            raise UserError(f"data.download=true: the UCR archive is not downloaded automatically. Fix: get it "
                            f"from {UCR_URL}, unpack it under {self.data_dir / 'ucr'}, and set data.download=false.")
        if not 0 < val_fraction < 1:
            raise UserError(f"data.val_fraction={val_fraction!r} must lie in (0, 1), e.g. 0.1.")
        self.dataset, self.val_fraction, self.split_seed, self.normalize = dataset, val_fraction, split_seed, normalize
        folder = self.data_dir / "ucr" / dataset
        self.files = {s: folder / f"{dataset}_{s.upper()}.tsv" for s in ("train", "test")}
        ts_files = {s: p.with_suffix(".ts") for s, p in self.files.items()}
        if not all(p.is_file() for p in self.files.values()) and all(p.is_file() for p in ts_files.values()):
            self.files = ts_files  # the .ts pair: its dimensions are the channels
            self.lookback, self.channels = ts_shape(self.files["train"])
        elif self.files["train"].is_file():  # the first line gives L; labels need the whole file (setup)
            self.lookback = len(read_ucr_first(self.files["train"]))
        elif dataset in UCR_LENGTHS:
            self.lookback = UCR_LENGTHS[dataset]  # files missing: setup says where to put them
        else:
            self.missing()

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        """K, from the TRAIN labels (read once; missing files raise the error naming them)."""
        if not self.files["train"].is_file():
            self.missing()
        if not hasattr(self, "_train"):
            self._train = read_series(self.files["train"])
        return len(label_order(self._train[0]))

    def missing(self) -> None:
        absent = [str(p) for p in self.files.values() if not p.is_file()]
        ts = [p.with_suffix(".ts").name for p in self.files.values()]
        raise MissingDataError(f"dataset 'ucr' ({self.dataset}): missing {' and '.join(absent)}. Fix: download the "
                               f"UCR archive (2018) from {UCR_URL} and unpack it so that these files exist, or put "
                               f"{' and '.join(ts)} there (the .ts archive, univariate and multivariate UEA, from "
                               f"{TS_URL}), or set data.data_dir / data.dataset.")

    def load(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        self.require_files()
        train_labels, train = getattr(self, "_train", None) or read_series(self.files["train"])
        test_labels, test = read_series(self.files["test"])
        classes = label_order(train_labels)
        unseen = sorted(set(test_labels) - set(classes))
        if unseen:
            raise UserError(f"{self.files['test']}: labels {unseen} never occur in {self.files['train']}.")
        if test.shape[1:] != train.shape[1:]:  # [L] or [L, C]
            raise UserError(f"{self.dataset}: TRAIN series have shape (steps, channels) {train.shape[1:]}, TEST "
                            f"{test.shape[1:]}.")
        index = {c: i for i, c in enumerate(classes)}
        y_train = np.array([index[c] for c in train_labels])
        y_test = np.array([index[c] for c in test_labels])
        if self.normalize:
            train, test = znormalize(train), znormalize(test)
        fit, val = stratified_split(y_train, self.val_fraction, self.split_seed)
        return {"train": (train[fit], y_train[fit]), "val": (train[val], y_train[val]), "test": (test, y_test)}


def read_series(path: Path) -> tuple[list[str], np.ndarray]:
    """(labels, series [N, L] or [N, L, C]) of a .tsv or a .ts file."""
    return read_ts(path) if path.suffix == ".ts" else read_ucr(path)


def read_ucr_first(path: Path) -> list[str]:
    """The values of the first series (the label dropped): its length is L."""
    with open(path) as f:
        for line in f:
            fields = [v for v in re.split(r"[\t,]", line.strip()) if v != ""]
            if fields:
                return fields[1:]
    raise UserError(f"{path} is empty.")


def shape_series(shape: str, length: int, rng: np.random.RandomState, noise: float) -> np.ndarray:
    """One series of a class: random cycles (2-4), phase, amplitude and offset, plus Gaussian noise."""
    t = np.arange(length) / length
    cycles, phase = rng.uniform(2.0, 4.0), rng.uniform(0, np.pi / 2)  # a quarter turn: learnable in a few epochs
    if shape == "chirp":  # frequency rising from `cycles` to 3x over the series
        angle = 2 * np.pi * cycles * (t + t ** 2) + phase
    else:
        angle = 2 * np.pi * cycles * t + phase
    base = {"sine": np.sin(angle), "square": np.sign(np.sin(angle)), "chirp": np.sin(angle),
            "sawtooth": 2 * ((angle / (2 * np.pi)) % 1.0) - 1}[shape]
    return rng.uniform(0.8, 1.2) * base + rng.uniform(-1, 1) + noise * rng.normal(size=length)


@register("series_classes", task="timeseries", kind="dataset", embedded=True)
class SeriesClassesDataModule(SeriesClassificationDataModule):
    """K of sine / square / sawtooth / chirp, labels i % K (balanced), each split from its own seeded stream."""

    name = "series_classes"

    def __init__(self, num_classes: int = 4, length: int = 128, num_train: int = 240, num_val: int = 80,
                 num_test: int = 80, noise: float = 0.3, seed: int = 0, normalize: bool = True, **base: Any) -> None:
        """num_classes: 2-4 (the first K of sine, square, sawtooth, chirp); noise: std of the added noise."""
        super().__init__(**base)
        if not 2 <= num_classes <= len(SHAPES):
            raise UserError(f"data.num_classes={num_classes!r}: series_classes has {len(SHAPES)} shapes. Fix: 2-4.")
        if length < 8:
            raise UserError(f"data.length={length!r} is too short for a shape to show. Fix: data.length>=8.")
        self.num_classes, self.lookback = num_classes, length
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.noise, self.seed, self.normalize = noise, seed, normalize

    def load(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for i, (split, n) in enumerate(self.sizes.items()):
            rng = np.random.RandomState([self.seed, i])  # a split's series do not depend on the others' sizes
            y = np.arange(n) % self.num_classes
            x = np.stack([shape_series(SHAPES[k], self.lookback, rng, self.noise) for k in y]) if n else \
                np.zeros((0, self.lookback))
            out[split] = (znormalize(x) if self.normalize else x, y)
        return out
