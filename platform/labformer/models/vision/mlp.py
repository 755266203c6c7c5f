"""A plain multilayer perceptron on flattened pixels: the floor every vision backbone is compared
against, and the smallest model there is (benchmarks/compare/ times the platform's own per-step cost
on it, where the model itself costs almost nothing)."""
from __future__ import annotations

import torch
import torch.nn as nn

from labformer.errors import UserError
from labformer.registry import register


class MLP(nn.Module):
    def __init__(self, in_chans: int, img_size: int, hidden: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        if num_layers < 1 or hidden < 1:
            raise UserError(f"model.num_layers={num_layers} and model.hidden={hidden} must be >= 1; "
                            "e.g. model.num_layers=2 model.hidden=256")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_chans * img_size * img_size
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        self.layers = nn.Sequential(*layers)
        self.num_features = hidden

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


@register("mlp", task="vision", paper="a baseline (flattened pixels, GELU hidden layers)")
def mlp(in_chans: int, img_size: int, hidden: int = 256, num_layers: int = 2, dropout: float = 0.0) -> nn.Module:
    """hidden: width of every hidden layer (the feature size); num_layers: hidden layers."""
    return MLP(in_chans, img_size, hidden, num_layers, dropout)
