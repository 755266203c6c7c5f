"""Vision transformers with mixture-of-experts FFNs: timm's ViT with some blocks' MLP replaced
by a layer of `labformer.layers.moe` (the rest of timm's block is unchanged:
x <- x + Attn(LN(x)); x <- x + FFN(LN(x))).

    vit_moe       V-MoE (Riquelme et al. 2021): top-k routed experts in every other block
                  (the odd ones, as in the paper's "Every-2" layout), k=2, capacity 1.25,
                  batch-prioritised routing as an option (moe_kwargs.priority=batch).
    soft_moe_vit  Soft MoE (Puigcerver et al. 2024): Soft MoE layers in the second half of
                  the blocks, as the paper's ViT-S/B; slots_per_expert * num_experts slots
                  per image (here 16 = a quarter of 64 tokens at 32 px).

Sizes follow `vit_tiny` (width 192, 12 blocks, 3 heads, patch 4), so a comparison with it is
dense vs sparse at the same attention and the same per-expert width.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from labformer.errors import UserError
from labformer.layers.build import build_layer
from labformer.registry import register


def moe_blocks(depth: int, every: int) -> list[int]:
    """Indices of the blocks that get an MoE FFN: every `every`-th (every=2: 1, 3, 5, ...), or the
    second half of the blocks with every=0."""
    if every < 0:
        raise UserError(f"model.moe_every={every} must be >= 0 (0: the second half of the blocks)")
    return list(range(depth // 2, depth)) if every == 0 else list(range(every - 1, depth, every))


def vit_with_experts(ffn: str, blocks: list[int], in_chans: int, img_size: int, patch_size: int, embed_dim: int,
                     depth: int, num_heads: int, mlp_ratio: float, drop_path_rate: float,
                     moe_kwargs: dict[str, Any]) -> VisionTransformer:
    vit = VisionTransformer(img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=0,
                            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                            drop_path_rate=drop_path_rate)
    for i in blocks:
        vit.blocks[i].mlp = build_layer("ffn", ffn, "model.moe_kwargs", dim=embed_dim, hidden_ratio=mlp_ratio,
                                        **moe_kwargs)
    return vit


@register("vit_moe", task="vision", paper="Riquelme et al. 2021, Scaling Vision with Sparse Mixture of Experts")
def vit_moe(in_chans: int = 3, img_size: int = 32, patch_size: int = 4, embed_dim: int = 192, depth: int = 12,
            num_heads: int = 3, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0, moe_every: int = 2,
            moe_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """moe_every: an MoE FFN in every moe_every-th block (2: blocks 1, 3, 5, ...); moe_kwargs: the
    moe_topk layer's settings (default num_experts 8, k 2, capacity_factor 1.25)."""
    kwargs = {"num_experts": 8, "k": 2, "capacity_factor": 1.25, **(moe_kwargs or {})}
    return vit_with_experts("moe_topk", moe_blocks(depth, moe_every), in_chans, img_size, patch_size, embed_dim,
                            depth, num_heads, mlp_ratio, drop_path_rate, kwargs)


@register("soft_moe_vit", task="vision", paper="Puigcerver et al. 2024, From Sparse to Soft Mixtures of Experts")
def soft_moe_vit(in_chans: int = 3, img_size: int = 32, patch_size: int = 4, embed_dim: int = 192, depth: int = 12,
                 num_heads: int = 3, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0,
                 moe_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Soft MoE FFNs in the second half of the blocks; moe_kwargs: the soft_moe layer's settings
    (default num_experts 8, slots_per_expert 2)."""
    kwargs = {"num_experts": 8, "slots_per_expert": 2, **(moe_kwargs or {})}
    return vit_with_experts("soft_moe", moe_blocks(depth, 0), in_chans, img_size, patch_size, embed_dim, depth,
                            num_heads, mlp_ratio, drop_path_rate, kwargs)
