"""The contrastive family's DataModule: two augmented views of any family's data.

`task=contrastive data=<name>` wraps the DataModule that `<name>` is registered under
(vision's digits / fashion_mnist / cifar, graph datasets, series, text) or a
contrastive-native one (omniglot). A view adapter (registry kind "views", keyed by the
modality) takes a split's items out of that DataModule and batches them as dicts:

    train: {"views": (view_1, view_2), "y": labels}
    val / test: {"views": ..., "x": clean items, "y": labels}   (views seeded: same every time)
    bank: {"x": clean train items, "y": labels}   (kNN monitor and linear probe)

Labels are -1 where the data has none. Objectives that learn from labels (triplet, pair)
get P classes x K items per batch from `PKBatchSampler`.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from labformer import registry
from labformer.data.sampling import train_sampler
from labformer.errors import UserError


class PKBatchSampler(Sampler[list[int]]):
    """Batches of `classes` random classes x `per_class` random items each (with replacement
    only inside a class smaller than `per_class`); `len(labels) // (classes * per_class)`
    batches per epoch, reshuffled per epoch from `seed`."""

    def __init__(self, labels: torch.Tensor | np.ndarray, classes: int = 16, per_class: int = 4, seed: int = 0) -> None:
        labels = np.asarray(labels)
        self.by_class = [np.flatnonzero(labels == c) for c in np.unique(labels) if c >= 0]
        if classes < 2 or per_class < 2:
            raise UserError(f"task.pk_sampler: classes={classes} and per_class={per_class} must both be >= 2 "
                            "(a batch needs positives and negatives)")
        if len(self.by_class) < classes:
            raise UserError(f"task.pk_sampler.classes={classes} but the training split has only "
                            f"{len(self.by_class)} labelled classes; lower it")
        self.classes, self.per_class, self.seed, self.epoch = classes, per_class, seed, 0
        self.batches = max(1, len(labels) // (classes * per_class))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.RandomState(self.seed + self.epoch)
        self.epoch += 1  # also advances when nobody calls set_epoch
        for _ in range(self.batches):
            batch: list[int] = []
            for c in rng.choice(len(self.by_class), self.classes, replace=False):
                items = self.by_class[c]
                batch += rng.choice(items, self.per_class, replace=len(items) < self.per_class).tolist()
            yield batch


def modality_of(data_name: str) -> tuple[str, str]:
    """(family whose registry holds `data_name`, encoder modality) for `task=contrastive data=<name>`."""
    entry = registry.get(data_name, kind="dataset")
    if "modality" in entry.meta:  # registered for this family itself (omniglot)
        return "contrastive", entry.meta["modality"]
    family = next(t for t in entry.tasks if t != "contrastive")
    return family, family


class ContrastiveDataModule(L.LightningDataModule):
    def __init__(self, base: L.LightningDataModule, modality: str, views: dict[str, Any] | None = None,
                 pk_sampler: dict[str, int] | None = None, eval_seed: int = 0) -> None:
        super().__init__()
        self.base, self.modality, self.eval_seed = base, modality, eval_seed
        self.adapter = registry.create("contrastive", modality, kind="views", base=base, **(views or {}))
        self.pk_sampler = pk_sampler
        self.name = base.name
        self.batch_size = getattr(base, "batch_size", None)
        self.num_workers = getattr(base, "num_workers", 0)
        self._sets: dict[str, Any] = {}

    def __getattr__(self, key: str) -> Any:
        # Whatever the backbone builder needs (img_size, in_chans, vocab_size, ...) comes from the base.
        if key.startswith("_") or key in ("base",):
            raise AttributeError(key)
        return getattr(self.base, key)

    def prepare_data(self) -> None:
        self.base.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self._sets:
            return
        self.base.setup(stage)
        a = self.adapter
        self._sets = {"train": a.dataset("train", clean=False, seed=None),
                      "val": a.dataset("val", clean=True, seed=self.eval_seed),
                      "test": a.dataset("test", clean=True, seed=self.eval_seed + 1),
                      "bank": a.dataset("train", clean=True, seed=None, augment=False)}

    @property
    def labelled(self) -> bool:
        """Whether items carry class labels (known before reading: no kNN monitor without them)."""
        return self.adapter.labelled

    @property
    def encoder_features(self) -> int | None:
        """Width of one encoded item where the backbone's output is not a feature vector (series: H * C)."""
        return self.base.horizon * self.base.channels if self.modality == "timeseries" else None

    @property
    def class_disjoint(self) -> bool:
        """True when validation/test classes are held out of training (kNN then means nothing)."""
        return bool(getattr(self.base, "class_disjoint", False))

    def groups(self, split: str) -> np.ndarray | None:
        """Per item of `split`, the group an N-way episode stays in (Omniglot: the alphabet)."""
        groups = getattr(self.base, "alphabets", None)
        return None if not groups else np.asarray(groups[split])

    def oneshot_runs(self):
        """The base dataset's fixed one-shot runs (Omniglot's official 20 with data.official_runs), else None."""
        runs = getattr(self.base, "oneshot_runs", None)
        return runs() if runs else None

    def labels(self, split: str) -> torch.Tensor:
        self.setup()
        return torch.as_tensor(self.adapter.split(split)[1])

    def _loader(self, split: str, **kwargs: Any) -> DataLoader:
        self.setup()
        return DataLoader(self._sets[split], collate_fn=self.adapter.collate, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(), **kwargs)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        if self.pk_sampler:
            sampler = PKBatchSampler(self.labels("train"), seed=int(os.getenv("PL_GLOBAL_SEED", 0)),
                                     **self.pk_sampler)
            return self._loader("train", batch_sampler=sampler)
        # drop_last: a last batch of one item breaks the projectors' BatchNorm
        return self._loader("train", batch_size=self.batch_size, sampler=train_sampler(self._sets["train"]),
                            drop_last=len(self._sets["train"]) > self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", batch_size=self.batch_size)

    def bank_dataloader(self) -> DataLoader:
        """The training split without augmentation, in order: the kNN memory bank and probe data."""
        return self._loader("bank", batch_size=self.batch_size)

    def describe(self) -> str:
        describe = getattr(self.base, "describe", None)
        return f"two views ({self.modality}) of {describe() if describe else self.name}"

    def __repr__(self) -> str:
        return f"ContrastiveDataModule({self.describe()})"

    __str__ = __repr__
