"""The one door through which timm architectures enter the registry.

Each entry names a timm model class and the keyword arguments that size it for the
28-32 px images of this project (timm's defaults assume 224 px ImageNet): timm's own
`model_args` pattern, with these sizes as the entry's `args` and the class's signature as
its settings, so every timm argument can be set from the config (`model.drop_path_rate=0.1`)
and is checked against the class. The class is built headless (`num_classes=0`), so
`forward` returns pooled features `[B, D]` and the task owns the classifier.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch.nn as nn
from timm.models import convmixer, pit, pvt_v2, swin_transformer, tnt, vision_transformer

from labformer.registry import register

# name -> (timm class, sizes for small images, paper)
TIMM_BACKBONES: dict[str, tuple[type[nn.Module], dict[str, Any], str]] = {
    # 0.14M parameters headless; patch 4: 16 px (digits) -> 4x4 = 16 tokens, 32 px -> 64, 28 px -> 49.
    "vit_nano": (vision_transformer.VisionTransformer,
                 dict(patch_size=4, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0),
                 "Dosovitskiy et al. 2021 (a 0.2M-parameter ViT for quick runs)"),
    "vit_tiny": (vision_transformer.VisionTransformer,
                 dict(patch_size=4, embed_dim=192, depth=12, num_heads=3),
                 "Dosovitskiy et al. 2021; DeiT-Ti width"),
    "vit_small": (vision_transformer.VisionTransformer,
                  dict(patch_size=4, embed_dim=384, depth=12, num_heads=6),
                  "Dosovitskiy et al. 2021; DeiT-S width"),
    # b0 widths; spatial reduction of keys/values shrunk because stage 1 has only 8x8 tokens at 32 px
    # (b0's sr_ratio 8 would leave one key).
    "pvt_v2_b0": (pvt_v2.PyramidVisionTransformerV2,
                  dict(depths=(2, 2, 2, 2), embed_dims=(32, 64, 160, 256), num_heads=(1, 2, 5, 8),
                       sr_ratios=(4, 2, 1, 1), mlp_ratios=(8.0, 8.0, 4.0, 4.0)),
                  "Wang et al. 2022, PVT v2"),
    # 4x4 outer patches, each an inner sentence of 16 pixel words (first_stride=1).
    "tnt_tiny": (tnt.TNT,
                 dict(patch_size=4, first_stride=1, embed_dim=192, inner_dim=12, depth=12,
                      num_heads_outer=3, num_heads_inner=2, qkv_bias=False),
                 "Han et al. 2021, Transformer in Transformer"),
    # PiT-Ti widths; overlapping stem (stride 2): 32 px -> 15x15 tokens, pooled to 8x8 then 4x4.
    "pit_ti": (pit.PoolingVisionTransformer,
               dict(patch_size=4, stride=2, base_dims=(32, 32, 32), depth=(2, 6, 4), heads=(2, 4, 8),
                    mlp_ratio=4.0),
               "Heo et al. 2021, Pooling-based Vision Transformer"),
    # ConvMixer-256/8 with kernel 5 and patch 2: the paper's CIFAR-10 setting.
    "convmixer_256_8": (convmixer.ConvMixer,
                        dict(dim=256, depth=8, kernel_size=5, patch_size=2),
                        "Trockman & Kolter 2022, Patches Are All You Need?"),
    # Swin-T depths/heads at half width; 2 px patches and 4x4 windows fit 28-32 px images
    # (32 px -> 16x16 tokens, merged to 8, 4, 2).
    "swin_tiny": (swin_transformer.SwinTransformer,
                  dict(patch_size=2, window_size=4, embed_dim=48, depths=(2, 2, 6, 2),
                       num_heads=(3, 6, 12, 24)),
                  "Liu et al. 2021, Swin Transformer"),
}


def build_timm(timm_class: type[nn.Module], in_chans: int = 3, img_size: int = 32, **kwargs: Any) -> nn.Module:
    """`timm_class` for `in_chans` x `img_size`^2 images, with the entry's sizes and the config's settings."""
    # Lists from YAML become tuples: timm indexes and compares these as tuples.
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    if "img_size" in inspect.signature(timm_class.__init__).parameters:
        kwargs["img_size"] = img_size
    return timm_class(in_chans=in_chans, **kwargs)


for _name, (_cls, _sizes, _paper) in TIMM_BACKBONES.items():
    # headless; device and dtype are Lightning's business
    register(_name, task="vision", args=_sizes, signature=_cls, source=f"timm:{_cls.__name__}", paper=_paper,
             fixed=dict(timm_class=_cls, num_classes=0, device=None, dtype=None))(build_timm)
