"""Mixture-of-experts feed-forward layers (registry kind "ffn"), one variant per file:
moe_topk (top-k routing with capacity), soft_moe (Soft MoE, encoders only), thor (stochastic
experts). `base.py` holds the expert bank, auxiliary losses and load statistics."""
from labformer.layers.moe import soft, thor, topk  # noqa: F401  (registers the variants)
from labformer.layers.moe.base import (Experts, MoELayer, SharedMoE, active_parameters,  # noqa: F401
                                       collect_aux_losses, moe_layers)
