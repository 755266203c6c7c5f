"""What an objective is: a module owning its heads that turns a batch of views into a loss.

`loss(encoder, batch)` gets the online encoder (`images/graphs/series/tokens -> [B, D]`) and
the batch dict of the contrastive DataModule: `views` (two augmented views of the same
items) and `y` (labels; -1 where the data has none). It returns the loss and a dict of
extra scalars to log. `after_step(encoder)` runs after each optimiser step (EMA updates).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

Encoder = Callable[[Any], torch.Tensor]


class Objective(nn.Module):
    needs_labels = False  # True: batches come from the P x K class sampler and `y` must be labels

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.feature_dim = feature_dim

    def loss(self, encoder: Encoder, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def attach(self, encoder: nn.Module) -> None:
        """Called once with the online encoder (objectives with an EMA target copy it here)."""

    def after_step(self, encoder: nn.Module) -> None:
        pass

    def callbacks(self) -> list:
        """Lightning callbacks the objective brings along (CropMAE: its reconstruction picture)."""
        return []

    # One-shot evaluation's similarity: a method `(query [Q,D], support [S,D]) -> [Q,S]` in
    # objectives with a learned scorer or embedding (pair, triplet); None: cosine of the features.
    score = None
