"""The vision backbone contract: `images[B,C,H,W] -> features[B, num_features]`.

The vision task builds a backbone with the data's `in_chans` and `img_size` and owns the
linear head. timm models meet the contract as they are (built headless), so it is a
Protocol rather than a base class.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from labformer.errors import UserError


# builder argument: the DataModule attribute it comes from
INPUTS = {"in_chans": "in_chans", "img_size": "img_size"}
EXAMPLE_INPUTS = {"in_chans": 3, "img_size": 32}  # what `python -m labformer list` counts parameters at


@runtime_checkable
class VisionBackbone(Protocol):
    num_features: int  # D

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def check_patches_and_depth(patch_size: int, img_size: int, depth: int, blocks: str, example_depth: int) -> None:
    """The settings every patch-based backbone written here shares, checked with the fix in the message."""
    if patch_size < 1 or img_size < patch_size:
        raise UserError(f"model.patch_size={patch_size} must be between 1 and img_size={img_size}; "
                        "e.g. model.patch_size=4 for 28-32 px images")
    if depth < 1:
        raise UserError(f"model.depth={depth} must be >= 1 ({blocks}); e.g. model.depth={example_depth}")
