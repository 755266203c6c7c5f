"""WideNet (Xue et al., AAAI 2022, "Go Wider Instead of Deeper"): one transformer block's
weights shared across the whole depth, its FFN a mixture of experts, and only the LayerNorms
individual per layer.

    x_{l+1/2} = x_l + Attn(LN1_l(x_l))          Attn: one module for every layer
    x_{l+1}   = x_{l+1/2} + MoE(LN2_l(x_{l+1/2}))  MoE: one top-k layer for every layer

Width comes from the experts (E of them), depth from re-using the block: at the same depth
and width as a ViT it holds about 1/depth of the attention weights. Built from timm's ViT by
pointing every block's attention and FFN at the first block's (its per-layer LayerNorms stay
separate); each use of the shared MoE keeps its own load-balancing loss (`SharedMoE`), as the
paper applies the auxiliary loss at every layer.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from labformer.layers.build import build_layer
from labformer.layers.moe import SharedMoE
from labformer.registry import register


@register("widenet", task="vision", paper="Xue et al. 2022, Go Wider Instead of Deeper (WideNet)")
def widenet(in_chans: int = 3, img_size: int = 32, patch_size: int = 4, embed_dim: int = 192, depth: int = 12,
            num_heads: int = 3, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0,
            moe_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """One attention and one MoE FFN shared by all `depth` blocks; moe_kwargs: the moe_topk layer's
    settings (default num_experts 4, k 2, capacity_factor 1.25: the paper's WideNet-B has 4 experts)."""
    vit = VisionTransformer(img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=0,
                            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                            drop_path_rate=drop_path_rate)
    shared = build_layer("ffn", "moe_topk", "model.moe_kwargs", dim=embed_dim, hidden_ratio=mlp_ratio,
                         **{"num_experts": 4, "k": 2, "capacity_factor": 1.25, **(moe_kwargs or {})})
    attention = vit.blocks[0].attn
    for block in vit.blocks:
        block.attn = attention
        block.mlp = SharedMoE(shared)
    return vit
