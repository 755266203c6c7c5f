"""The vision backbone contract: `images[B,C,H,W] -> features[B, num_features]`.

The vision task builds a backbone with the data's `in_chans` and `img_size` and owns the
linear head. timm models meet the contract as they are (built headless), so it is a
Protocol rather than a base class.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


# builder argument: the DataModule attribute it comes from
INPUTS = {"in_chans": "in_chans", "img_size": "img_size"}
EXAMPLE_INPUTS = {"in_chans": 3, "img_size": 32}  # what `python -m labformer list` counts parameters at


@runtime_checkable
class VisionBackbone(Protocol):
    num_features: int  # D

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...
