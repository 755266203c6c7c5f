"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from the official python-pickle archives."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from labformer.data.files import RemoteFile, extract_tar, locate
from labformer.data.vision.base import VisionDataModule
from labformer.errors import UserError
from labformer.registry import register


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


@register("cifar10", task="vision", kind="dataset", embedded=False)
class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10: 50k train / 10k test, 32x32 RGB, 10 classes."""

    name, num_classes = "cifar10", 10
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    archive = RemoteFile("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                         "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")
    folder, label_key = "cifar-10-batches-py", "labels"
    train_files, test_files = tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",)


@register("cifar100", task="vision", kind="dataset", embedded=False)
class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100 (fine labels): 50k train / 10k test, 32x32 RGB, 100 classes."""

    name, num_classes = "cifar100", 100
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    archive = RemoteFile("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                         "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7")
    folder, label_key = "cifar-100-python", "fine_labels"  # the 100 classes, not the 20 superclasses
    train_files, test_files = ("train",), ("test",)

