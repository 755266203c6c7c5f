"""change_pairs: generated (before, after, change mask) triples, the change family's embedded default.

Each pair shares one random textured background (a smooth colour field plus pixel noise, every
channel <= 140 of 255). Shapes (rectangles and ellipses, 1/8 to 1/3 of the side) lie on it; between
the dates 1-3 changes happen, each an addition, a removal or a move of a shape. Each shape of a
pair has its own colour, whose brightest channel (>= 200, a different value per shape) exceeds
every other channel of every colour and the whole background, so two pixels look the same
exactly when the same shape, or the background, is visible there. Hence the mask, computed from
which shape is visible at each pixel on each date, is exactly the set of pixels that differ
(an overlap of a moved shape with its old place, or a change hidden under a shape on top, is no
change). Splits are drawn from their own streams of `seed`: the same pairs on every machine.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from labformer.data.sampling import train_sampler
from labformer.errors import UserError
from labformer.registry import register

SPLITS = ("train", "val", "test")


def shape_footprint(kind: int, top: int, left: int, h: int, w: int, size: int) -> np.ndarray:
    """Bool [size, size]: a rectangle (kind 0) or the ellipse inscribed in it (kind 1)."""
    rows, cols = np.ogrid[:size, :size]
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    if kind == 1:
        cy, cx = top + (h - 1) / 2, left + (w - 1) / 2
        inside &= ((rows - cy) / (h / 2)) ** 2 + ((cols - cx) / (w / 2)) ** 2 <= 1
    return inside


def render_pair(rng: np.random.RandomState, size: int, shapes: Sequence[int],
                changes: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One (before, after) pair: uint8 [3, size, size] each, and the change mask bool [size, size]."""
    coarse = torch.from_numpy(rng.uniform(0, 0.5, (1, 3, 4, 4)))
    field = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0]
    background = np.clip(field.numpy() + rng.uniform(-0.06, 0.06, (3, size, size)), 0, 0.55)
    background = np.round(background * 255).astype(np.uint8)  # <= 140

    base = rng.randint(shapes[0], shapes[1] + 1)
    kinds = rng.choice(("add", "remove", "move"), rng.randint(changes[0], changes[1] + 1))
    total = base + int((kinds == "add").sum())  # shapes over both dates; the added ones come last
    lo, hi = max(2, size // 8), max(3, size // 3)
    boxes = []
    for _ in range(total):
        h, w = rng.randint(lo, hi + 1, 2)
        boxes.append([rng.randint(2), rng.randint(0, size - h + 1), rng.randint(0, size - w + 1), h, w])
    colours = np.round(rng.uniform(0, 0.7, (total, 3)) * 255).astype(np.uint8)  # <= 179
    colours[np.arange(total), rng.randint(3, size=total)] = 200 + np.arange(total) * 55 // max(1, total - 1)
    in_before = np.array([i < base for i in range(total)])
    in_after = in_before.copy()
    moved = {}
    existing = list(rng.permutation(base))
    for kind in kinds[kinds != "add"]:
        if not existing:
            break
        i = int(existing.pop())
        if kind == "remove":
            in_after[i] = False
        else:  # a new place at least a quarter of the side away along one axis
            shape, top, left, h, w = boxes[i]
            while True:
                new_top, new_left = rng.randint(0, size - h + 1), rng.randint(0, size - w + 1)
                if max(abs(new_top - top), abs(new_left - left)) >= size // 4:
                    break
            moved[i] = (new_top, new_left)
    in_after[base:] = True  # the additions

    def visible(present: np.ndarray, places: dict[int, tuple[int, int]]) -> np.ndarray:
        ids = np.full((size, size), -1)
        for i in np.flatnonzero(present):  # later shapes on top
            shape, top, left, h, w = boxes[i]
            top, left = places.get(i, (top, left))
            ids[shape_footprint(shape, top, left, h, w, size)] = i
        return ids

    ids_before, ids_after = visible(in_before, {}), visible(in_after, moved)

    def paint(ids: np.ndarray) -> np.ndarray:
        return np.where(ids[None] >= 0, colours[ids].transpose(2, 0, 1), background)

    return paint(ids_before), paint(ids_after), ids_before != ids_after


def generate(n: int, size: int, seed: int, split: str, shapes: Sequence[int] = (2, 5),
             changes: Sequence[int] = (1, 3)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`n` pairs of `split`: uint8 before/after [n, 3, size, size] and bool masks [n, size, size]."""
    rng = np.random.RandomState([seed, SPLITS.index(split)])  # one fixed stream per split
    pairs = [render_pair(rng, size, shapes, changes) for _ in range(n)]
    before, after, masks = (torch.from_numpy(np.stack(p)) for p in zip(*pairs))
    return before, after, masks


def _assembled(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch  # the dataset builds whole batches


class PairDataset(Dataset):
    """Normalised float pairs and long masks, a batch at a time; training batches are flipped and the
    dates swapped at random, the same for the two images and the mask (none of it changes the answer)."""

    def __init__(self, before: torch.Tensor, after: torch.Tensor, masks: torch.Tensor, mean: float, std: float,
                 augment: bool) -> None:
        self.before, self.after, self.masks = before, after, masks
        self.mean, self.std, self.augment = mean, std, augment

    def __len__(self) -> int:
        return len(self.masks)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        before, after, mask = self.before[idx], self.after[idx], self.masks[idx].long()[:, None]
        if self.augment:
            b = len(idx)
            swap = (torch.rand(b) < 0.5).view(b, 1, 1, 1)
            before, after = torch.where(swap, after, before), torch.where(swap, before, after)
            for dim in (-1, -2):
                flip = (torch.rand(b) < 0.5).view(b, 1, 1, 1)
                before, after, mask = (torch.where(flip, x.flip(dim), x) for x in (before, after, mask))
        norm = lambda x: (x.float() / 255 - self.mean) / self.std  # noqa: E731
        return {"before": norm(before), "after": norm(after), "mask": mask[:, 0]}


# 2000 training pairs of 32 px: an epoch of pvt_v2_b0 takes seconds on a CPU thread.
@register("change_pairs", task="change", kind="dataset", embedded=True)
class ChangePairsDataModule(L.LightningDataModule):
    """Generated before/after pairs with their change masks (see the module docstring); no files."""

    name, in_chans, num_classes = "change_pairs", 3, 2
    mean, std = 0.29, 0.18  # of the pixels of the training pairs (seed 0, 32 px)

    def __init__(self, data_dir: str | Path = "data", batch_size: int = 32, num_workers: int = 0, img_size: int = 32,
                 train_size: int = 2000, val_size: int = 250, test_size: int = 500, shapes: Sequence[int] = (2, 5),
                 changes: Sequence[int] = (1, 3), seed: int = 0, augment: bool = True) -> None:
        """img_size: side of the images; *_size: pairs per split; shapes: (min, max) shapes on the first date;
        changes: (min, max) additions, removals and moves between the dates; seed: of the generator (not
        the run's seed: the data stay the same across runs); augment: flips and date swaps in training."""
        super().__init__()
        for key, value, ok in (("batch_size", batch_size, batch_size >= 1), ("img_size", img_size, img_size >= 16),
                               ("shapes", shapes, 1 <= shapes[0] <= shapes[1]),
                               ("changes", changes, 1 <= changes[0] <= changes[1]),
                               ("train_size", train_size, train_size >= 1), ("val_size", val_size, val_size >= 1),
                               ("test_size", test_size, test_size >= 1)):
            if not ok:
                raise UserError(f"data.{key}={value!r} is out of range for change_pairs. Fix: batch_size>=1, "
                                "img_size>=16, 1<=shapes[0]<=shapes[1], 1<=changes[0]<=changes[1], sizes>=1")
        self.batch_size, self.num_workers, self.img_size = batch_size, num_workers, img_size
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.shapes, self.changes, self.seed, self.augment = tuple(shapes), tuple(changes), seed, augment
        self.sets: dict[str, PairDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        for split in SPLITS:
            data = generate(self.sizes[split], self.img_size, self.seed, split, self.shapes, self.changes)
            self.sets[split] = PairDataset(*data, self.mean, self.std, augment=self.augment and split == "train")

    def _loader(self, split: str, **kwargs: Any) -> DataLoader:
        self.setup()
        return DataLoader(self.sets[split], batch_size=self.batch_size, collate_fn=_assembled,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available(), **kwargs)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        sampler = train_sampler(self.sets["train"])  # None under DDP: Lightning installs its own
        return self._loader("train", sampler=sampler, shuffle=sampler is None)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def describe(self) -> str:
        sizes = " / ".join(f"{s} {n}" for s, n in self.sizes.items())
        return f"change_pairs: {sizes} pairs of 3x{self.img_size}x{self.img_size}, batch {self.batch_size}"

    def __repr__(self) -> str:
        return f"ChangePairsDataModule({self.describe()})"

    __str__ = __repr__
