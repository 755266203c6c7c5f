"""scikit-learn's 8x8 digits: the vision family's embedded default (no download)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from labformer.data.vision.base import VisionDataModule, stratified_split
from labformer.registry import register


# Upsampled to 16 px (16 tokens with 4 px patches; every vision backbone builds at 16 px): the default run
# takes seconds. Batch 32: 41 steps per epoch on the 1293 training images.
@register("digits", task="vision", kind="dataset", embedded=True, args=dict(batch_size=32, img_size=16))
class DigitsDataModule(VisionDataModule):
    """scikit-learn's bundled 8x8 digits (1797 images), upsampled to 16 px by default (any size works)."""

    name, num_classes, in_chans, natural_size = "digits", 10, 1, 8
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

