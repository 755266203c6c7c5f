"""The vision DataModule contract and what every vision dataset shares.

Datasets (one file each): digits (embedded, from scikit-learn), Fashion-MNIST, CIFAR-10/100.

Contract (the vision task and the backbone builder rely on it): right after `__init__`,
before any file is read, a DataModule knows `name`, `num_classes`, `in_chans` and
`img_size`, so a bad task/model pair fails before data is read. `setup()` reads the
files once into uint8 tensors [N,C,H,W] (already resized to `img_size`) and yields
float32 [C,H,W] images normalised with the dataset's mean/std. All splits index one
"source" ordering (official train then official test; digits: sklearn's order), kept in
`split_indices`, so splits are checkable and reproducible.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms import v2

from labformer.data.sampling import train_sampler
from labformer.data.vision.augment import RandomCropFlip
from labformer.errors import UserError


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) sorted indices; `fraction` of every class is held out.

    np.random.RandomState's stream is frozen by NumPy's compatibility policy, so a seed
    gives the same split on every NumPy version (Generator streams may change).
    """
    rng = np.random.RandomState(seed)
    held = [idx[rng.permutation(len(idx))][: int(round(len(idx) * fraction))]
            for idx in (np.flatnonzero(labels == c) for c in np.unique(labels))]
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    return np.setdiff1d(np.arange(len(labels)), held_idx), held_idx


class _Batch(tuple):
    """A batch the dataset already assembled; `collate_batch` passes it through."""


def collate_batch(items):
    if isinstance(items, _Batch):
        return tuple(items)
    return tuple(default_collate(items))



class ImageTensorDataset(Dataset):
    """uint8 images [N,C,H,W] and int64 labels held in memory.

    `transform` takes one image or a batch; the DataLoader calls `__getitems__` with a
    batch's indices, so it runs once per batch with no per-sample Python loop. Set
    `per_sample=True` for transforms that draw one set of random parameters per call
    (most v2 random transforms).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform, per_sample: bool = False):
        self.images, self.labels, self.transform, self.per_sample = images, labels, transform, per_sample

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.labels[i]

    def __getitems__(self, indices: Sequence[int]):
        if self.per_sample:
            return [self[i] for i in indices]
        idx = torch.as_tensor(indices, dtype=torch.long)
        return _Batch((self.transform(self.images[idx]), self.labels[idx]))


class VisionDataModule(L.LightningDataModule):
    """Shared logic; a subclass sets the class attributes and implements `find` and `read`."""

    name: str
    num_classes: int
    in_chans: int
    natural_size: int  # side of the images as stored in the files
    mean: tuple[float, ...]  # per channel, on [0,1] pixels of the training set
    std: tuple[float, ...]
    hflip: bool = False  # mirror images when augmenting (not for digits: 2 and 5 are not mirror images)
    crop_pad: float = 1 / 8  # random-crop padding as a fraction of img_size (4 px at 32)

    def __init__(self, data_dir: str | Path = "data", batch_size: int = 128, num_workers: int = 0,
                 img_size: int | None = None, augment: bool = True, val_fraction: float = 0.1,
                 split_seed: int = 0, download: bool = True):
        """batch_size: images per step; num_workers: DataLoader worker processes (0 is fastest for in-memory
        tensors on few cores); img_size: side after resizing (None: the native size); augment: random crop
        (padding `crop_pad` of the side) + horizontal flip where `hflip`, on the training split only;
        val_fraction: share of the non-test images held out for validation, per class; split_seed: seed of
        the train/val split; download: fetch the dataset's files (sha256-checked) when not in <data_dir>/<name>/."""
        super().__init__()
        img_size = img_size if img_size is not None else self.natural_size
        for key, value, ok in (("batch_size", batch_size, batch_size >= 1),
                               ("num_workers", num_workers, num_workers >= 0),
                               ("img_size", img_size, img_size >= 1),
                               ("val_fraction", val_fraction, 0 < val_fraction < 1)):
            if not ok:
                raise UserError(f"data.{key}={value!r} is out of range for dataset '{self.name}'. "
                                f"Fix: batch_size>=1, num_workers>=0, img_size>=1, 0<val_fraction<1.")
        self.data_dir, self.batch_size, self.num_workers = Path(data_dir).expanduser(), batch_size, num_workers
        self.img_size, self.augment, self.download = img_size, augment, download
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.train_set: ImageTensorDataset | None = None
        self.val_set: ImageTensorDataset | None = None
        self.test_set: ImageTensorDataset | None = None
        self.split_indices: dict[str, np.ndarray] = {}

    # -- per dataset ---------------------------------------------------------------------
    def find(self, download: bool) -> Path | None:
        """The folder holding the files (downloading if allowed); raises MissingDataError."""
        raise NotImplementedError

    def read(self, folder: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(uint8 images [N,C,H,W], int labels [N], indices of the test split) over the source."""
        raise NotImplementedError

    # -- Lightning hooks -----------------------------------------------------------------
    def prepare_data(self) -> None:
        self.find(self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:  # read once; every stage reuses the tensors
            return
        images, labels, test_idx = self.read(self.find(self.download))
        pool = np.setdiff1d(np.arange(len(labels)), test_idx)
        keep, held = stratified_split(labels[pool], self.val_fraction, self.split_seed)
        self.split_indices = {"train": pool[keep], "val": pool[held], "test": np.sort(test_idx)}
        x = self._resize(torch.from_numpy(np.ascontiguousarray(images)))
        y = torch.from_numpy(labels.astype(np.int64))
        self.train_set = self._dataset(x, y, "train", self.train_transform() if self.augment else self.eval_transform())
        self.val_set = self._dataset(x, y, "val", self.eval_transform())
        self.test_set = self._dataset(x, y, "test", self.eval_transform())

    def _dataset(self, x, y, split: str, transform) -> ImageTensorDataset:
        idx = torch.from_numpy(self.split_indices[split])
        return ImageTensorDataset(x[idx], y[idx], transform)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.img_size and x.shape[-2] == self.img_size:
            return x
        # Once at load time, in chunks to bound the float intermediates.
        size = [self.img_size, self.img_size]
        return torch.cat([v2.functional.resize(c, size, antialias=True) for c in x.split(8192)])

    # -- transforms ----------------------------------------------------------------------
    def eval_transform(self) -> v2.Transform:
        return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)])

    def train_transform(self) -> v2.Transform:
        pad = max(1, round(self.img_size * self.crop_pad))
        return v2.Compose([RandomCropFlip(pad, self.hflip), self.eval_transform()])

    # -- loaders -------------------------------------------------------------------------
    def _loader(self, dataset: ImageTensorDataset, shuffle: bool) -> DataLoader:
        sampler = train_sampler(dataset) if shuffle else None
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler,
                          shuffle=shuffle and sampler is None, num_workers=self.num_workers,
                          pin_memory=torch.cuda.is_available(), persistent_workers=self.num_workers > 0,
                          collate_fn=collate_batch)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.test_set, shuffle=False)

    def describe(self) -> str:
        sizes = ("train {} / val {} / test {}".format(*(len(s) for s in (self.train_set, self.val_set, self.test_set)))
                 if self.train_set is not None else "not loaded yet")
        return (f"{self.name}: {sizes}, images {self.in_chans}x{self.img_size}x{self.img_size}, "
                f"{self.num_classes} classes, batch {self.batch_size}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    __str__ = __repr__  # LightningDataModule.__str__ builds every dataloader, which would read the files


