"""Fashion-MNIST (Xiao et al. 2017): four IDX files, from the data directory, Debian's package or the web."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from labformer.data.files import RemoteFile, locate
from labformer.data.vision.base import VisionDataModule
from labformer.errors import UserError
from labformer.registry import register


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


@register("fashion_mnist", task="vision", kind="dataset", embedded=False)
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

