"""Supervised change detection (ChangeFormer, Bandara & Patel 2022): (before, after) -> change mask.

`task=change model=<vision backbone> data=<pair dataset>`: a vision backbone with multi-scale
features (timm's `forward_intermediates`; the default pvt_v2_b0 is the paper's kind of
hierarchical transformer) encodes both dates with the same weights, ChangeFormer's decoder
(models/change/changeformer.py) turns the per-scale differences into 2-class logits per pixel;
cross-entropy; the change class's F1 and IoU over all pixels of a split (torchmetrics).
Batches are dicts: `before`, `after` [B,C,H,W] and `mask` [B,H,W] (1 = changed).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex

from labformer.models.change.changeformer import ChangeFormerDecoder, multiscale_features, usable_scales
from labformer.models.vision import base as contract
from labformer.registry import register
from labformer.tasks.base import Task


def change_metrics() -> MetricCollection:
    """F1 and IoU of the change class (not averaged with the no-change class, which would flatter them)."""
    return MetricCollection({"f1": BinaryF1Score(), "iou": BinaryJaccardIndex()})


# lr: on change_pairs, val F1 0.94 after 3 epochs (1e-3: 0.90); the paper's 1e-4 fine-tunes a pretrained encoder
@register("change", task="change", kind="task", args=dict(lr=2e-3))
class ChangeTask(Task):
    MONITOR = ("val/f1", "max")
    BACKBONE_INPUTS = contract.INPUTS
    HEAD_INPUTS = {"in_chans": "in_chans", "img_size": "img_size"}

    @classmethod
    def backbone_family(cls, cfg: Any) -> str:
        return "vision"  # the encoder is any vision backbone

    def __init__(self, backbone: nn.Module, in_chans: int, img_size: int, decoder_dim: int = 64,
                 difference: str = "abs", scales: int = 4, **base: Any) -> None:
        """decoder_dim: the decoder's embedding width (the paper: 256); difference: abs (|e1 - e2|, the
        same prediction for swapped dates) | concat (the paper's conv module over both dates' features);
        scales: how many of the encoder's last feature maps the decoder reads."""
        super().__init__(backbone, **base)
        self.scales = usable_scales(backbone, scales)
        with torch.no_grad():  # the feature maps' widths, from one blank image
            was_training = backbone.training
            probe = multiscale_features(backbone.eval(), torch.zeros(1, in_chans, img_size, img_size), self.scales)
            backbone.train(was_training)
        self.decoder = ChangeFormerDecoder([f.shape[1] for f in probe], decoder_dim, difference)
        # One collection per stage (the keys get a suffix: "train" is an nn.Module method name).
        self.metrics = nn.ModuleDict({f"{s}_metrics": change_metrics().clone(prefix=f"{s}/")
                                      for s in ("train", "val", "test")})

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Logits [B, 2, H, W]; the two dates go through the one backbone together."""
        features = multiscale_features(self.backbone, torch.cat([before, after]), self.scales)
        b = before.shape[0]
        return self.decoder([f[:b] for f in features], [f[b:] for f in features], before.shape[-2:])

    def step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self(batch["before"], batch["after"])
        mask = batch["mask"]
        loss = F.cross_entropy(logits, mask)
        metrics = self.metrics[f"{stage}_metrics"]
        metrics.update(logits.detach().argmax(1), mask)
        n = mask.shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=stage == "train", on_epoch=True, batch_size=n,
                 sync_dist=stage != "train")
        self.log_dict(metrics, prog_bar=True, on_step=False, on_epoch=True, batch_size=n)
        return loss
