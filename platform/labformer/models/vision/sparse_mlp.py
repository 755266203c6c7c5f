"""Sparse-MLP (Lou et al., AAAI 2022, "Sparse-MLP: A Fully-MLP Architecture with Conditional
Computation"): timm's MLP-Mixer with both mixing MLPs of the later blocks replaced by top-k
mixtures of experts.

    x <- x + MoE_S(LN1(x)^T)^T     token mixing: each channel's row over the N tokens is one
                                   routed input (experts map R^N -> R^N)
    x <- x + MoE_C(LN2(x))         channel mixing: each token is one routed input (R^D -> R^D)

Dense Mixer blocks first, sparse ones in the second half (the paper puts its MoE blocks in the
later stages). Difference, stated: the paper's re-representation layers, which shrink the
token and channel counts before token-mixing MoE, are left out at these small image sizes.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn
from timm.models.mlp_mixer import MlpMixer

from labformer.layers.build import build_layer
from labformer.models.vision.moe_vit import moe_blocks
from labformer.registry import register


@register("sparse_mlp", task="vision", paper="Lou et al. 2022, Sparse-MLP: A Fully-MLP Architecture with "
                                             "Conditional Computation")
def sparse_mlp(in_chans: int = 3, img_size: int = 32, patch_size: int = 4, embed_dim: int = 192,
               num_blocks: int = 8, token_ratio: float = 0.5, channel_ratio: float = 4.0,
               drop_path_rate: float = 0.0, moe_every: int = 0, moe_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """token_ratio / channel_ratio: hidden widths of the token- and channel-mixing MLPs (relative to the
    token count and the width); moe_every: 0 puts MoE in the second half of the blocks, n>0 in every n-th;
    moe_kwargs: the moe_topk layers' settings (default num_experts 4, k 1, capacity_factor 1.25)."""
    mixer = MlpMixer(num_classes=0, img_size=img_size, in_chans=in_chans, patch_size=patch_size,
                     num_blocks=num_blocks, embed_dim=embed_dim, mlp_ratio=(token_ratio, channel_ratio),
                     drop_path_rate=drop_path_rate)
    kwargs = {"num_experts": 4, "k": 1, "capacity_factor": 1.25, **(moe_kwargs or {})}
    tokens = mixer.stem.num_patches
    for i in moe_blocks(num_blocks, moe_every):
        block = mixer.blocks[i]
        block.mlp_tokens = build_layer("ffn", "moe_topk", "model.moe_kwargs", dim=tokens, hidden_ratio=token_ratio,
                                       **kwargs)
        block.mlp_channels = build_layer("ffn", "moe_topk", "model.moe_kwargs", dim=embed_dim,
                                         hidden_ratio=channel_ratio, **kwargs)
    return mixer
