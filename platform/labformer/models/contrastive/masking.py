"""Random patch masking for MSN's anchor views.

On a timm VisionTransformer the masked patches are dropped from the token sequence after
the position embedding (MSN, Sec. 3: the anchor sees only the kept patches; cheaper too).
Other image backbones (convolutional stems, pyramids, windows) need a full grid, so there
the masked patches are zeroed in pixel space (0 = the dataset mean after normalisation).
"""
from __future__ import annotations

import torch
import torch.nn as nn


def is_vit(module: nn.Module) -> bool:
    from timm.models.vision_transformer import VisionTransformer

    return isinstance(module, VisionTransformer)


def kept_count(num_patches: int, ratio: float) -> int:
    return max(1, num_patches - int(round(num_patches * ratio)))


def random_keep(batch: int, num_patches: int, ratio: float, device=None) -> torch.Tensor:
    """Sorted indices [B, keep] of the patches each item keeps."""
    keep = kept_count(num_patches, ratio)
    return torch.rand(batch, num_patches, device=device).argsort(1)[:, :keep].sort(1).values


def drop_vit_tokens(vit: nn.Module, images: torch.Tensor, ratio: float) -> torch.Tensor:
    """timm ViT forward with `ratio` of the patch tokens removed; pooled features [B, D]."""
    x = vit._pos_embed(vit.patch_embed(images))
    prefix, patches = x[:, :vit.num_prefix_tokens], x[:, vit.num_prefix_tokens:]
    b, n, d = patches.shape
    keep = random_keep(b, n, ratio, images.device)
    patches = patches.gather(1, keep[..., None].expand(b, keep.shape[1], d))
    x = vit.norm_pre(vit.patch_drop(torch.cat([prefix, patches], 1)))
    x = vit.norm(vit.blocks(x))
    return vit.forward_head(x, pre_logits=True)


def mask_pixel_patches(images: torch.Tensor, ratio: float, patch_size: int) -> torch.Tensor:
    """Zero `ratio` of the non-overlapping `patch_size` squares of each image."""
    b, _, h, w = images.shape
    gh, gw = -(-h // patch_size), -(-w // patch_size)
    keep = random_keep(b, gh * gw, ratio, images.device)
    grid = torch.zeros(b, gh * gw, device=images.device, dtype=images.dtype)
    grid.scatter_(1, keep, 1.0)
    mask = grid.view(b, 1, gh, gw).repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)
    return images * mask[:, :, :h, :w]
