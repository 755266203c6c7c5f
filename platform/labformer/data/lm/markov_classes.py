"""Byte-level sequence classification for the LM task's encoder mode, generated offline.

`markov_classes`: which of K sources wrote a string? Each class is a first-order Markov
chain over 27 symbols (a-z and space) whose transition rows are drawn from a Dirichlet
with concentration `concentration` (larger: more alike, harder). Strings are their UTF-8
bytes (vocabulary 256). Everything is generated from `seed` with NumPy's frozen
RandomState stream, so the data are identical on every machine and need no download.
Solving it needs token mixing (bigram statistics), so it tells mixers apart, and it is
non-causal by nature: the backbone is built with `causal=false`.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from labformer.errors import UserError
from labformer.registry import register

SYMBOLS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz ", dtype=np.uint8)


def markov_strings(num: int, length: int, num_classes: int, concentration: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 bytes [num, length], int64 labels [num]), classes balanced and interleaved."""
    rng = np.random.RandomState(seed)
    s = len(SYMBOLS)
    chains = rng.dirichlet(np.full(s, concentration), size=(num_classes, s))  # [K, from, to]
    labels = np.arange(num) % num_classes
    states = np.empty((num, length), dtype=np.int64)
    states[:, 0] = rng.randint(0, s, size=num)
    cum = chains.cumsum(-1)
    for t in range(1, length):  # vectorised over strings: inverse-CDF sampling per step
        rows = cum[labels, states[:, t - 1]]
        states[:, t] = np.minimum((rows < rng.rand(num, 1)).sum(-1), s - 1)
    return SYMBOLS[states], labels.astype(np.int64)


@register("markov_classes", task="lm", kind="dataset", embedded=True)
class MarkovClassesDataModule(L.LightningDataModule):
    name = "markov_classes"
    objective = "classification"
    causal = False  # the backbone runs as a bidirectional encoder
    vocab_size = 256

    def __init__(self, data_dir: str | Path = "data", context: int = 64, num_classes: int = 4,
                 concentration: float = 0.5, train_size: int = 4000, eval_size: int = 500, batch_size: int = 32,
                 seed: int = 0, num_workers: int = 0) -> None:
        """context: bytes per string; concentration: Dirichlet concentration of the transition
        rows (larger: sources more alike); eval_size: strings in each of validation and test."""
        super().__init__()
        if context < 2 or num_classes < 2 or min(train_size, eval_size, batch_size) < 1 or concentration <= 0:
            raise UserError("data=markov_classes needs context >= 2, num_classes >= 2, concentration > 0 "
                            "and sizes >= 1")
        self.context, self.num_classes, self.concentration = context, num_classes, concentration
        self.train_size, self.eval_size, self.batch_size = train_size, eval_size, batch_size
        self.seed, self.num_workers = seed, num_workers
        self.sets: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        total = self.train_size + 2 * self.eval_size
        x, y = markov_strings(total, self.context, self.num_classes, self.concentration, self.seed)
        x, y = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y)
        bounds = {"train": (0, self.train_size), "val": (self.train_size, self.train_size + self.eval_size),
                  "test": (self.train_size + self.eval_size, total)}
        self.sets = {s: TensorDataset(x[a:b], y[a:b]) for s, (a, b) in bounds.items()}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(self.sets[split], batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def __repr__(self) -> str:
        return (f"MarkovClassesDataModule({self.num_classes} classes, {self.train_size}/{self.eval_size}/"
                f"{self.eval_size} strings of {self.context} bytes)")

    __str__ = __repr__

