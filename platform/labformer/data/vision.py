"""Vision DataModules: digits (embedded, from scikit-learn), Fashion-MNIST, CIFAR-10, CIFAR-100.

Contract (the vision task and the backbone builder rely on it): right after `__init__`,
before any file is read, a DataModule knows `name`, `num_classes`, `in_chans` and
`img_size`, so a bad task/model pair fails before data is read. `setup()` reads the
files once into uint8 tensors [N,C,H,W] (already resized to `img_size`) and yields
float32 [C,H,W] images normalised with the dataset's mean/std. All splits index one
"source" ordering (official train then official test; digits: sklearn's order), kept in
`split_indices`, so splits are checkable and reproducible.
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms import v2

from labformer.data.sampling import train_sampler
from labformer.data.files import RemoteFile, extract_tar, locate
from labformer.errors import UserError
from labformer.registry import register


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


class RandomCropFlip(torch.nn.Module):
    """v2.RandomCrop(size, padding=pad) then v2.RandomHorizontalFlip, for a whole uint8 batch at once.

    Each image still gets its own offset and flip; doing it with one gather instead of
    a v2 call per image is ~100x faster (v2 per sample measured 370 us/image on 2 cores,
    i.e. 20-30 s per Fashion-MNIST epoch spent on augmentation alone).
    """

    def __init__(self, pad: int, hflip: bool):
        super().__init__()
        self.pad, self.hflip = pad, hflip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = x.ndim == 3
        x = x[None] if single else x
        b, c, h, w = x.shape
        p = self.pad
        padded = torch.nn.functional.pad(x, (p, p, p, p)).flatten(2)  # zero fill, as v2.RandomCrop
        rows = torch.randint(0, 2 * p + 1, (b, 1, 1)) + torch.arange(h).view(1, h, 1)
        cols = torch.randint(0, 2 * p + 1, (b, 1, 1)) + torch.arange(w).view(1, 1, w)
        if self.hflip:
            cols = torch.where(torch.rand(b, 1, 1) < 0.5, cols.flip(-1), cols)
        index = (rows * (w + 2 * p) + cols).view(b, 1, h * w).expand(b, c, h * w)
        out = padded.gather(2, index).view(b, c, h, w)
        return out[0] if single else out


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
    default_img_size: int | None = None  # img_size when none is given; None: natural_size
    mean: tuple[float, ...]  # per channel, on [0,1] pixels of the training set
    std: tuple[float, ...]
    hflip: bool = False  # mirror images when augmenting (not for digits: 2 and 5 are not mirror images)
    crop_pad: float = 1 / 8  # random-crop padding as a fraction of img_size (4 px at 32)

    def __init__(self, data_dir: str | Path = "data", batch_size: int = 128, num_workers: int = 0,
                 img_size: int | None = None, augment: bool = True, val_fraction: float = 0.1,
                 split_seed: int = 0, download: bool = True):
        super().__init__()
        img_size = img_size if img_size is not None else self.default_img_size or self.natural_size
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


# ---------------------------------------------------------------------------------------
class DigitsDataModule(VisionDataModule):
    """scikit-learn's bundled 8x8 digits (1797 images), upsampled to 16 px by default (any size works)."""

    name, num_classes, in_chans, natural_size, default_img_size = "digits", 10, 1, 8, 16
    mean, std = (0.3058,), (0.3189,)  # measured on the training split at 16 px
    crop_pad = 1 / 16
    TEST_FRACTION, TEST_SEED = 0.2, 0  # no official test split: a fixed one, same for every run

    def find(self, download: bool) -> None:
        return None  # shipped inside scikit-learn

    def read(self, folder: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.round(digits.images * (255 / 16)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
        labels = digits.target.astype(np.int64)
        return images, labels, stratified_split(labels, self.TEST_FRACTION, self.TEST_SEED)[1]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format, optionally gzipped) as a uint8 array."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    ndim = raw[3] if len(raw) > 4 else 0
    if len(raw) < 4 + 4 * ndim or raw[:3] != b"\x00\x00\x08" or ndim == 0:
        raise UserError(f"{path} is not an unsigned-byte IDX file; delete it and fetch it again.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated ({data.size} bytes of {int(np.prod(shape))}); fetch it again.")
    return data.reshape(shape)


_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # the address in Zalando's README


class FashionMNISTDataModule(VisionDataModule):
    """Zalando's Fashion-MNIST: 60k train / 10k test, 28x28 grey, 10 classes, four IDX .gz files."""

    name, num_classes, in_chans, natural_size = "fashion_mnist", 10, 1, 28
    mean, std = (0.2860,), (0.3530,)
    hflip, crop_pad = True, 1 / 14  # 2 px at 28
    # sha256 of the upstream .gz files (Debian's copies hold the same deflate stream
    # under a different gzip header, so they are found by name, not by checksum).
    FILES = [RemoteFile(name, _FASHION_URL + name, sha) for name, sha in (
        ("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        ("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        ("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        ("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"))]
    SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)  # Debian dataset-fashion-mnist

    def find(self, download: bool) -> Path:
        return locate(self.name, self.FILES, self.data_dir, self.SYSTEM_DIRS, download=download)

    def read(self, folder: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_tr, y_tr, x_te, y_te = (read_idx(folder / f.name) for f in self.FILES)
        if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
            raise UserError(f"{folder}: image and label files disagree in length; fetch them again.")
        images = np.concatenate([x_tr, x_te])[:, None]
        return images, np.concatenate([y_tr, y_te]).astype(np.int64), np.arange(len(y_tr), len(images))


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR batches hold dicts, lists and numpy arrays only; refuse any other callable."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),  # numpy ints in lists
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR batch")
        return super().find_class(module, name)


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One python-pickle batch of the official CIFAR archives: uint8 [N,3,32,32], int64 labels."""
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()  # written by Python 2: byte-string keys
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # rows are R,G,B planes
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError, AttributeError) as e:
        raise UserError(f"{path} is not a CIFAR python batch with '{label_key}' ({e!r}); "
                        f"delete it and fetch the archive again.") from e
    if len(images) != len(labels):
        raise UserError(f"{path}: {len(images)} images but {len(labels)} labels.")
    return images, labels


class _CIFARDataModule(VisionDataModule):
    natural_size, in_chans, hflip = 32, 3, True
    archive: RemoteFile
    folder: str  # top folder inside the archive
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str

    def find(self, download: bool) -> Path:
        home = self.data_dir / self.name
        extracted = home / self.folder
        if all((extracted / f).is_file() for f in self.train_files + self.test_files):
            return extracted
        hint = (f"Also accepted: the extracted folder {extracted}/ holding "
                f"{', '.join(self.train_files + self.test_files)}.")
        where = locate(self.name, [self.archive], self.data_dir, download=download, hint=hint)
        return extract_tar(where / self.archive.name, home, self.folder)

    def read(self, folder: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = [read_cifar_batch(folder / f, self.label_key) for f in self.train_files + self.test_files]
        n_train = sum(len(p[1]) for p in parts[: len(self.train_files)])
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise UserError(f"{folder}: labels outside 0..{self.num_classes - 1}; is it the right dataset?")
        return images, labels, np.arange(n_train, len(labels))


class CIFAR10DataModule(_CIFARDataModule):
    name, num_classes = "cifar10", 10
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    archive = RemoteFile("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                         "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")
    folder, label_key = "cifar-10-batches-py", "labels"
    train_files, test_files = tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",)


class CIFAR100DataModule(_CIFARDataModule):
    name, num_classes = "cifar100", 100
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    archive = RemoteFile("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                         "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7")
    folder, label_key = "cifar-100-python", "fine_labels"  # the 100 classes, not the 20 superclasses
    train_files, test_files = ("train",), ("test",)


def _builder(cls: type[VisionDataModule], batch_size: int, downloads: bool = True):
    """The registered builder of `cls`: its typed signature is the config schema; the image
    size defaults to the class's own (one place, so builder and class cannot disagree)."""
    img_size = cls.default_img_size or cls.natural_size

    def build(data_dir: str = "data", batch_size: int = batch_size, num_workers: int = 0,
              img_size: int = img_size, augment: bool = True, val_fraction: float = 0.1,
              split_seed: int = 0, download: bool = True) -> VisionDataModule:
        return cls(data_dir, batch_size, num_workers, img_size, augment, val_fraction, split_seed, download)

    if not downloads:  # embedded data: no `download` setting to show in its config
        def build_embedded(data_dir: str = "data", batch_size: int = batch_size, num_workers: int = 0,
                           img_size: int = img_size, augment: bool = True, val_fraction: float = 0.1,
                           split_seed: int = 0) -> VisionDataModule:
            return build(data_dir, batch_size, num_workers, img_size, augment, val_fraction, split_seed)
        return build_embedded
    return build


# Registered builders: signatures are the config schema (conf/data/<name>.yaml).
register("digits", task="vision", kind="dataset", embedded=True)(
    _builder(DigitsDataModule, batch_size=32, downloads=False))
register("fashion_mnist", task="vision", kind="dataset", embedded=False)(
    _builder(FashionMNISTDataModule, batch_size=128))
register("cifar10", task="vision", kind="dataset", embedded=False)(
    _builder(CIFAR10DataModule, batch_size=128))
register("cifar100", task="vision", kind="dataset", embedded=False)(
    _builder(CIFAR100DataModule, batch_size=128))
