"""Any family's backbone as a siamese encoder: `inputs -> features [B, D]`.

The families' backbones end differently (DESIGN.md, "Backbone interface per family"), so
one pooling per modality turns each into one vector per item:
- vision: `images[B,C,H,W] -> [B,D]` already
- graph: node features `[N,D]` -> mean over each graph's nodes -> `[G,D]`
- lm (text): hidden states `[B,T,D]` -> mean over tokens -> `[B,D]`, or the backbone's own
  `pooled(tokens) -> [B,D]` where it has one (smith: the document vector)
- timeseries: forecast `[B,H,C]` -> flattened `[B,H*C]` (the horizon acts as the width)
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from labformer.errors import UserError

MODALITIES = ("vision", "graph", "lm", "timeseries")


class Encoder(nn.Module):
    def __init__(self, backbone: nn.Module, modality: str, num_features: int | None = None) -> None:
        super().__init__()
        if modality not in MODALITIES:
            raise UserError(f"no contrastive encoder for modality '{modality}'; one of {', '.join(MODALITIES)}")
        self.backbone, self.modality = backbone, modality
        self.num_features = num_features or int(backbone.num_features)

    def forward(self, x: Any) -> torch.Tensor:
        if self.modality == "vision":
            return self.backbone(x)
        if self.modality == "graph":
            from torch_geometric.nn import global_mean_pool

            return global_mean_pool(self.backbone(x), x.batch, size=x.num_graphs)
        if self.modality == "lm":  # a backbone with its own sequence vector (smith: the document's) gives it
            pooled = getattr(self.backbone, "pooled", None)
            return pooled(x) if pooled is not None else self.backbone(x).mean(1)
        return self.backbone(x).flatten(1)

    def forward_masked(self, images: torch.Tensor, ratio: float, patch_size: int) -> torch.Tensor:
        """Features of `images` with `ratio` of their patches dropped (MSN's masked anchor view)."""
        from labformer.models.contrastive.masking import drop_vit_tokens, is_vit, mask_pixel_patches

        if self.modality != "vision":
            raise UserError("patch masking needs a vision encoder (objective=msn); for graph, text and series "
                            "encoders use objective=simsiam or infonce")
        if is_vit(self.backbone):
            return drop_vit_tokens(self.backbone, images, ratio)
        return self.backbone(mask_pixel_patches(images, ratio, patch_size))
