"""Batch-wise image augmentation for in-memory uint8 tensors."""
from __future__ import annotations

import torch


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

