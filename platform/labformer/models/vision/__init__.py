"""Vision backbones: `images[B,C,H,W] -> features[B,D]`, each exposing `num_features`."""
from labformer.models.vision import (crate, mlp, moe_vit, monet, sparse_mlp, t2t_vit, timm_adapter,  # noqa: F401
                                     widenet)
