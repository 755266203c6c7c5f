"""Long Range Arena (Tay et al., ICLR 2021) tasks as series classification data (contract: classification.py).

Both give batches `(x[B,L,C] float, y[B] long)` to the time-series task's classification mode, so any
time-series backbone - the `transformer` with `model.attention=` from the attention registry above all -
runs them unchanged.

- `lra_listops`: LRA's ListOps, `<data_dir>/lra_release/listops-1000/basic_{train,val,test}.tsv` (header
  `Source<TAB>Target`), 10 classes (the value of the expression). The parentheses are dropped (as LRA does);
  the 15 tokens 0-9, `[MIN`, `[MAX`, `[MED`, `[SM`, `]` become one-hot channels (C = 15), so the
  transformer's linear input projection `W_in x_t` is exactly an embedding table (plus a shared bias).
  Sequences are cut / padded to `max_length` (2000, LRA's). The classification path has no padding mask
  (batches are `(x, y)`, backbones take `x` only), so padding is an all-zero vector: no channel for it,
  it embeds to the bias alone, but attention still sees those positions (LRA masks them).
- `lra_image`: LRA's Image task, CIFAR-10 as 1024-step grayscale sequences (row by row), from the
  standard `cifar-10-python.tar.gz` read by the vision family's CIFAR reader (`<data_dir>/cifar10/`,
  shared with `data=cifar10`). Grayscale as LRA (`tf.image.rgb_to_grayscale`, rounded to 0-255), one
  channel of intensity / 255: LRA embeds the 256 intensity values as tokens; here they are one number
  per step. Split as LRA's (tfds `train[:90%]`, `train[90%:]`, `test`): 45k / 5k / 10k.

LRA's Text (IMDB bytes) is not here: 256 one-hot channels are too wide, and an integer-token input would
need a token path in the time-series backbones, which take float x[B,L,C] only. Pathfinder and
Retrieval are not here either.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from labformer.data.files import MissingDataError
from labformer.data.timeseries.classification import SeriesClassificationDataModule
from labformer.errors import UserError
from labformer.registry import register

LRA_URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
LISTOPS_TOKENS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "[MIN", "[MAX", "[MED", "[SM", "]")
LISTOPS_DROPPED = ("(", ")")
GRAY = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale's weights, as LRA's image pipeline


class OneHotTokens(Dataset):
    """Token ids [N, L] kept as uint8 (ListOps' 96k x 2000 as floats would be 12 GB); each item one-hot
    [L, C] float on the fly. Id 0 is padding and has no channel: its rows are all zero."""

    def __init__(self, tokens: np.ndarray, labels: np.ndarray, channels: int) -> None:
        self.tokens = torch.as_tensor(tokens, dtype=torch.uint8)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.channels = channels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        onehot = torch.nn.functional.one_hot(self.tokens[i].long(), self.channels + 1)[:, 1:]
        return onehot.float(), self.labels[i]


def read_listops(path: Path, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(token ids [N, max_length] uint8, 1..15 for LISTOPS_TOKENS and 0 for padding, labels [N]) of one
    LRA ListOps .tsv; longer expressions are cut at max_length (as LRA's pipeline)."""
    index = {t: i + 1 for i, t in enumerate(LISTOPS_TOKENS)}
    rows, labels = [], []
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["Source", "Target"]:
            raise UserError(f"{path}: expected the header 'Source<TAB>Target' of LRA's ListOps files, got "
                            f"{header!r}.")
        for line_no, fields in enumerate(reader, 2):
            if not fields:
                continue
            if len(fields) < 2:
                raise UserError(f"{path}:{line_no}: expected 'Source<TAB>Target', got {fields!r}.")
            source, target = fields[0], fields[1].strip()
            try:
                ids = [index[t] for t in source.split() if t not in LISTOPS_DROPPED]
            except KeyError as e:
                raise UserError(f"{path}:{line_no}: unknown token {e.args[0]!r}; ListOps has "
                                f"{' '.join(LISTOPS_TOKENS)} and parentheses.") from None
            if not target.isdigit() or int(target) > 9:
                raise UserError(f"{path}:{line_no}: the target {target!r} is not a class 0-9.")
            row = np.zeros(max_length, dtype=np.uint8)
            row[:min(len(ids), max_length)] = ids[:max_length]
            rows.append(row)
            labels.append(int(target))
    tokens = np.stack(rows) if rows else np.zeros((0, max_length), dtype=np.uint8)
    return tokens, np.asarray(labels, dtype=np.int64)


@register("lra_listops", task="timeseries", kind="dataset", embedded=False)
class ListOpsDataModule(SeriesClassificationDataModule):
    """LRA ListOps: nested MAX/MIN/MED/SUM_MOD expressions, one-hot tokens, 10 classes (the value)."""

    name = "lra_listops"
    num_classes = 10
    channels = len(LISTOPS_TOKENS)
    folder = Path("lra_release") / "listops-1000"

    def __init__(self, max_length: int = 2000, download: bool = False, data_dir: str = "data", **base: Any) -> None:
        """max_length: tokens kept per expression, the series length L (LRA: 2000); shorter ones are padded
        with all-zero steps; download: unsupported (LRA's release is a 7 GB archive: fetch it by hand)."""
        super().__init__(data_dir=data_dir, **base)
        if download:
            raise UserError(f"data.download=true: LRA's release is not downloaded automatically (7 GB). Fix: get "
                            f"{LRA_URL}, unpack it under {self.data_dir}, and set data.download=false.")
        if max_length < 1:
            raise UserError(f"data.max_length={max_length!r} is out of range. Fix: data.max_length>=1 (LRA: 2000).")
        self.lookback = max_length
        self.files = {s: self.data_dir / self.folder / f"basic_{s}.tsv" for s in ("train", "val", "test")}

    def missing(self) -> None:
        absent = [str(p) for p in self.files.values() if not p.is_file()]
        raise MissingDataError(
            f"dataset 'lra_listops': missing {', '.join(absent)}. Fix: download LRA's release {LRA_URL} (about "
            f"7 GB; not downloaded automatically) on a machine with internet and unpack it (tar xzf "
            f"lra_release.gz) under {self.data_dir.expanduser().absolute()}/ so that "
            f"{self.folder}/basic_train.tsv, basic_val.tsv and basic_test.tsv exist, or point "
            f"LABFORMER_DATA_DIR (paths.data_dir) at the folder holding lra_release/.")

    def load(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        self.require_files()
        return {split: read_listops(path, self.lookback) for split, path in self.files.items()}

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        for split, (tokens, y) in self.load().items():
            if len(y) == 0:
                raise UserError(f"dataset '{self.name}': {self.files[split]} holds no expression.")
            self.sets[split] = OneHotTokens(tokens, y, self.channels)  # type: ignore[assignment]

    @property
    def protocol(self) -> str:
        return "LRA ListOps: accuracy over every expression of basic_test.tsv"


def grayscale_sequences(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 3, 32, 32] RGB -> float32 [N, 1024]: LRA's grayscale (rounded to 0-255), row by row, / 255."""
    gray = np.tensordot(np.asarray(GRAY, dtype=np.float32), images.astype(np.float32), axes=([0], [1]))
    return (np.clip(np.round(gray), 0, 255) / 255.0).reshape(len(images), -1).astype(np.float32)


@register("lra_image", task="timeseries", kind="dataset", embedded=False)
class LRAImageDataModule(SeriesClassificationDataModule):
    """LRA Image: CIFAR-10 as grayscale pixel sequences of length 1024, one channel, 10 classes."""

    name = "lra_image"
    num_classes, lookback, channels = 10, 1024, 1

    def __init__(self, val_fraction: float = 0.1, download: bool = False, data_dir: str = "data",
                 **base: Any) -> None:
        """val_fraction: the tail of CIFAR-10's 50k training images held out for validation (LRA: 0.1, i.e.
        45k / 5k); download: fetch cifar-10-python.tar.gz (170 MB, sha256-checked) when it is missing."""
        super().__init__(data_dir=data_dir, **base)
        if not 0 < val_fraction < 1:
            raise UserError(f"data.val_fraction={val_fraction!r} must lie in (0, 1); LRA's is 0.1.")
        self.val_fraction, self.download = val_fraction, download

    def cifar(self) -> Any:
        from labformer.data.vision.cifar import CIFAR10DataModule  # the one CIFAR reader of the platform

        return CIFAR10DataModule(data_dir=self.data_dir, download=self.download)

    def load(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        reader = self.cifar()
        try:
            folder = reader.find(self.download)
        except MissingDataError as e:
            raise MissingDataError(f"dataset 'lra_image' reads CIFAR-10 ({CIFAR10_URL}) from the same place as "
                                   f"data=cifar10.\n{e}") from None
        images, labels, test_idx = reader.read(folder)
        x = grayscale_sequences(images)
        train = np.setdiff1d(np.arange(len(labels)), test_idx)  # the archive's order: data_batch_1..5
        n_val = int(round(self.val_fraction * len(train)))
        fit, val = train[:len(train) - n_val], train[len(train) - n_val:]
        return {"train": (x[fit], labels[fit]), "val": (x[val], labels[val]),
                "test": (x[np.sort(test_idx)], labels[np.sort(test_idx)])}

    @property
    def protocol(self) -> str:
        return "LRA Image: accuracy over CIFAR-10's 10k test images as grayscale sequences"
