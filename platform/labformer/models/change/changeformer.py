"""ChangeFormer's difference modules and MLP decoder (Bandara & Patel, IGARSS 2022).

A hierarchical encoder (any vision backbone with timm's `forward_intermediates`, e.g.
pvt_v2_b0, swin_tiny; plain ViTs give one scale several times) encodes the two dates with the
same weights. Per scale i, coarsest first:

    e_i^t = W_i f_i^t                                 per-pixel linear embedding to `dim`, both dates
    d_i   = |e_i^1 - e_i^2|                            difference="abs": the same for (after, before)
          | Diff_i([e_i^1 ; e_i^2])                    difference="concat": the paper's module,
                                                       conv3x3-ReLU-BN-conv3x3-ReLU over the concatenation
    d_i  += up(d_{i+1})                                the paper's coarse-to-fine cascade
    z     = ReLU(BN(Conv1x1([up(d_1) ; ... ; up(d_n)])))   fused at the finest scale
    logits = Conv3x3(ResBlock(up(z)))                  2 classes per pixel, at the input's size

The paper upsamples z with two transposed convolutions (its finest scale is 1/4); bilinear
upsampling to the input size followed by the residual block works for any stride. Its deep
supervision of every scale is left out (one loss on the full-resolution map).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError

DIFFERENCES = ("abs", "concat")


def multiscale_features(backbone: nn.Module, images: torch.Tensor, scales: int) -> list[torch.Tensor]:
    """The backbone's last `scales` feature maps [B, C_i, H_i, W_i], finest first."""
    return backbone.forward_intermediates(images, indices=scales, intermediates_only=True)


def usable_scales(backbone: nn.Module, scales: int) -> int:
    """`scales`, or fewer when the backbone has fewer stages/blocks; a clear error without intermediates."""
    if not callable(getattr(backbone, "forward_intermediates", None)):
        raise UserError(f"task=change needs an encoder that returns multi-scale feature maps (timm's "
                        f"forward_intermediates); {type(backbone).__name__} does not. Use model=pvt_v2_b0 (the "
                        "paper's kind of hierarchical encoder), swin_tiny, pit_ti, or a ViT such as vit_nano")
    if scales < 1:
        raise UserError(f"task.scales={scales} must be >= 1, e.g. task.scales=4")
    available = len(getattr(backbone, "feature_info", None) or []) or scales
    return min(scales, available)


def conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class ConcatDifference(nn.Module):
    """ChangeFormer's difference module over the two dates' concatenated embeddings."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(2 * dim, dim, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(dim),
                                 nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([a, b], 1))


class ResidualBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(dim, dim, 3), nn.Conv2d(dim, dim, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class ChangeFormerDecoder(nn.Module):
    def __init__(self, in_channels: list[int], dim: int = 64, difference: str = "abs", num_classes: int = 2) -> None:
        """in_channels: channels of the encoder's feature maps, finest first; dim: the embedding width
        (the paper: 256); difference: abs | concat (see the module docstring)."""
        super().__init__()
        if difference not in DIFFERENCES:
            raise UserError(f"task.difference={difference} is unknown; use one of {', '.join(DIFFERENCES)}")
        self.difference = difference
        self.embed = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)  # a per-pixel linear layer
        self.diff = nn.ModuleList(ConcatDifference(dim) for _ in in_channels) if difference == "concat" else None
        self.fuse = conv_bn_relu(dim * len(in_channels), dim, 1)
        self.refine = ResidualBlock(dim)
        self.classify = nn.Conv2d(dim, num_classes, 3, padding=1)

    def forward(self, before: list[torch.Tensor], after: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Feature maps of the two dates (finest first) -> logits [B, num_classes, *size]."""
        finest = before[0].shape[-2:]
        diffs, coarser = [], None
        for i in reversed(range(len(before))):
            a, b = self.embed[i](before[i]), self.embed[i](after[i])
            d = (a - b).abs() if self.diff is None else self.diff[i](a, b)
            if coarser is not None:
                d = d + F.interpolate(coarser, size=d.shape[-2:], mode="bilinear", align_corners=False)
            coarser = d
            diffs.append(F.interpolate(d, size=finest, mode="bilinear", align_corners=False))
        z = self.fuse(torch.cat(diffs[::-1], 1))
        z = F.interpolate(z, size=tuple(size), mode="bilinear", align_corners=False)
        return self.classify(self.refine(z))
