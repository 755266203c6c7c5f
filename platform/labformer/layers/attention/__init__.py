"""Token mixers (registry kind "attention"), one variant per file.

Every variant is built as `cls(dim, num_heads, causal, max_len, dropout, bias, **options)`,
maps `x[B,T,D] -> [B,T,D]`, and declares in its registry metadata whether it can be
causal (`causal=True`: output t depends on inputs <= t only) and its cost (`complexity`).
"""
from labformer.layers.attention import (fnet, group, linear, linformer, performer,  # noqa: F401
                                        persistent_memory, simplicial, softmax, sparse)
from labformer.layers.attention.base import build_attention, causal_attention_names  # noqa: F401
