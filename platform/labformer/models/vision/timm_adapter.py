"""The one door through which timm architectures enter the registry.

Each entry names a timm model class and the keyword arguments that size it for the
28-32 px images of this project (timm's defaults assume 224 px ImageNet). The class is
built headless (`num_classes=0`), so `forward` returns pooled features `[B, D]` and the
task owns the classifier. `conf/model/<name>.yaml` repeats these defaults so a config
says what it builds; any of them can be overridden from the command line.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch.nn as nn
from timm.models import convmixer, pit, pvt_v2, swin_transformer, tnt, vision_transformer

from labformer.registry import register
from labformer.utils.arguments import check_arguments

# name -> (timm class, defaults for small images, paper)
TIMM_BACKBONES: dict[str, tuple[type[nn.Module], dict[str, Any], str]] = {
    "vit_nano": (vision_transformer.VisionTransformer,
                 dict(patch_size=4, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0),
                 "Dosovitskiy et al. 2021 (a 0.2M-parameter ViT for quick runs)"),
    "vit_tiny": (vision_transformer.VisionTransformer,
                 dict(patch_size=4, embed_dim=192, depth=12, num_heads=3),
                 "Dosovitskiy et al. 2021; DeiT-Ti width"),
    "vit_small": (vision_transformer.VisionTransformer,
                  dict(patch_size=4, embed_dim=384, depth=12, num_heads=6),
                  "Dosovitskiy et al. 2021; DeiT-S width"),
    # b0 widths; spatial reduction shrunk because stage 1 has only 8x8 tokens at 32 px.
    "pvt_v2_b0": (pvt_v2.PyramidVisionTransformerV2,
                  dict(depths=(2, 2, 2, 2), embed_dims=(32, 64, 160, 256), num_heads=(1, 2, 5, 8),
                       sr_ratios=(4, 2, 1, 1), mlp_ratios=(8.0, 8.0, 4.0, 4.0)),
                  "Wang et al. 2022, PVT v2"),
    # 4x4 outer patches, each an inner sentence of 16 pixel words (first_stride=1).
    "tnt_tiny": (tnt.TNT,
                 dict(patch_size=4, first_stride=1, embed_dim=192, inner_dim=12, depth=12,
                      num_heads_outer=3, num_heads_inner=2, qkv_bias=False),
                 "Han et al. 2021, Transformer in Transformer"),
    "pit_ti": (pit.PoolingVisionTransformer,
               dict(patch_size=4, stride=2, base_dims=(32, 32, 32), depth=(2, 6, 4), heads=(2, 4, 8),
                    mlp_ratio=4.0),
               "Heo et al. 2021, Pooling-based Vision Transformer"),
    # ConvMixer-256/8 with kernel 5 and patch 2: the paper's CIFAR-10 setting.
    "convmixer_256_8": (convmixer.ConvMixer,
                        dict(dim=256, depth=8, kernel_size=5, patch_size=2),
                        "Trockman & Kolter 2022, Patches Are All You Need?"),
    # Swin-T depths/heads at half width; 2 px patches and 4x4 windows fit 28-32 px images.
    "swin_tiny": (swin_transformer.SwinTransformer,
                  dict(patch_size=2, window_size=4, embed_dim=48, depths=(2, 2, 6, 2),
                       num_heads=(3, 6, 12, 24)),
                  "Liu et al. 2021, Swin Transformer"),
}


def _takes(cls: type, arg: str) -> bool:
    return arg in inspect.signature(cls.__init__).parameters


def build_timm(name: str, in_chans: int = 3, img_size: int = 32, **overrides: Any) -> nn.Module:
    """Build registered timm backbone `name`, headless, for `in_chans` x `img_size`^2 images."""
    cls, defaults, _ = TIMM_BACKBONES[name]
    # Lists from YAML become tuples: timm indexes and compares these as tuples.
    kwargs = {**defaults, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}}
    check_arguments(cls.__init__, kwargs, where="model")
    if _takes(cls, "img_size"):
        kwargs["img_size"] = img_size
    model = cls(in_chans=in_chans, num_classes=0, **kwargs)
    return model


def _register(name: str) -> None:
    cls, _, paper = TIMM_BACKBONES[name]

    def builder(in_chans: int = 3, img_size: int = 32, **overrides: Any) -> nn.Module:
        return build_timm(name, in_chans, img_size, **overrides)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"timm {cls.__module__}.{cls.__name__} sized for small images ({paper})."
    register(name, task="vision", source=f"timm:{cls.__name__}", paper=paper)(builder)


for _name in TIMM_BACKBONES:
    _register(_name)
