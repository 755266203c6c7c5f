"""Image views: random resized crop, flip, intensity jitter and blur, for a whole batch at once.

Per item the parameters are drawn independently, as torchvision's v2.RandomResizedCrop,
v2.RandomHorizontalFlip, v2.ColorJitter(brightness, contrast) (applied with probability
`jitter_p`) and v2.GaussianBlur (with probability `blur_p`) do per image; here all are
applied to a uint8 batch [B,C,H,W] in a few tensor operations (per-image v2 calls cost
~0.4 ms each on these CPUs, i.e. minutes per Fashion-MNIST epoch for two views).
- crop: area fraction s ~ U(scale), aspect r ~ logU(ratio); the crop (s*r)^0.5 x (s/r)^0.5 of
  the side, at a uniform position, is resampled bilinearly to the output size
- jitter: x * b, then (x - mean(x)) * c + mean(x), b and c ~ U(1 - j, 1 + j); clamped to [0, 1]
- blur: a Gaussian of sigma ~ U(blur_sigma), kernel about a tenth of the side (odd, >= 3)
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from labformer.data.contrastive.views.base import ViewDataset
from labformer.registry import register


class ImageViews:
    def __init__(self, mean: Sequence[float], std: Sequence[float], scale: Sequence[float] = (0.2, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), hflip: bool = True, jitter: float = 0.4,
                 jitter_p: float = 0.8, blur_p: float = 0.5, blur_sigma: Sequence[float] = (0.1, 2.0)) -> None:
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.scale, self.ratio, self.hflip = tuple(scale), tuple(ratio), hflip
        self.jitter, self.jitter_p, self.blur_p, self.blur_sigma = jitter, jitter_p, blur_p, tuple(blur_sigma)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - self.mean) / self.std

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = images.float() / 255
        b = x.shape[0]

        def uniform(low: float, high: float, n: int = b) -> torch.Tensor:
            return low + (high - low) * torch.rand(n, generator=generator)

        x = self.crop(x, uniform)
        if self.jitter > 0:
            on = torch.rand(b, generator=generator) < self.jitter_p
            bright = torch.where(on, uniform(1 - self.jitter, 1 + self.jitter), torch.ones(b)).view(b, 1, 1, 1)
            contrast = torch.where(on, uniform(1 - self.jitter, 1 + self.jitter), torch.ones(b)).view(b, 1, 1, 1)
            x = (x * bright).clamp(0, 1)
            mean = x.mean((1, 2, 3), keepdim=True)
            x = ((x - mean) * contrast + mean).clamp(0, 1)
        if self.blur_p > 0:
            on = torch.rand(b, generator=generator) < self.blur_p
            x = torch.where(on.view(b, 1, 1, 1), gaussian_blur(x, uniform(*self.blur_sigma)), x)
        return (x - self.mean) / self.std

    def crop(self, x: torch.Tensor, uniform) -> torch.Tensor:
        b = x.shape[0]
        area = uniform(*self.scale)
        log_ratio = uniform(math.log(self.ratio[0]), math.log(self.ratio[1])).exp()
        w = (area * log_ratio).sqrt().clamp(max=1.0)  # fractions of the side
        h = (area / log_ratio).sqrt().clamp(max=1.0)
        cx, cy = uniform(-1, 1) * (1 - w), uniform(-1, 1) * (1 - h)  # centre, in [-1, 1] coordinates
        flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0) if self.hflip else torch.ones(b)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
        theta[:, 1, 1], theta[:, 1, 2] = h, cy
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of [B,C,H,W] with its own sigma [B] (separable, reflect padding)."""
    b, c, h, w = x.shape
    k = max(3, int(round(0.1 * min(h, w))) // 2 * 2 + 1)
    offsets = torch.arange(k, dtype=x.dtype) - k // 2
    kernel = torch.exp(-offsets[None] ** 2 / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [B*C, k]
    flat = x.reshape(1, b * c, h, w)
    pad = k // 2
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), kernel.view(b * c, 1, 1, k), groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), kernel.view(b * c, 1, k, 1), groups=b * c)
    return flat.view(b, c, h, w)


class ImageViewDataset(ViewDataset):
    """uint8 images and labels; the clean item is the normalised image (see ViewDataset)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, views: ImageViews, clean: bool,
                 seed: int | None = None, augment: bool = True) -> None:
        super().__init__(images.__getitem__, labels, views, clean, seed, augment, prepare=views.normalize)


@register("vision", task="contrastive", kind="views")
class ImageViewAdapter:
    """Views of a vision DataModule's splits (VisionDataModule and Omniglot keep uint8 `.images`)."""

    labelled = True  # the image datasets have classes

    def __init__(self, base, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), hflip: bool | None = None, jitter: float = 0.4,
                 jitter_p: float = 0.8, blur_p: float = 0.5, blur_sigma=(0.1, 2.0)) -> None:
        self.base = base
        self.views = ImageViews(base.mean, base.std, scale, ratio, base.hflip if hflip is None else hflip,
                                jitter, jitter_p, blur_p, blur_sigma)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        data = {"train": self.base.train_set, "val": self.base.val_set, "test": self.base.test_set}[name]
        return data.images, data.labels

    def dataset(self, split: str, clean: bool, seed: int | None, augment: bool = True) -> Dataset:
        images, labels = self.split(split)
        return ImageViewDataset(images, labels, self.views, clean=clean, seed=seed, augment=augment)

    @staticmethod
    def collate(batch: dict[str, Any]) -> dict[str, Any]:
        return batch  # assembled by the dataset
