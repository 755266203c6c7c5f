"""Shared transformer building blocks, chosen by name from the registry.

Kinds: "attention" (token mixers, one variant per file in `attention/`, each declaring
`causal` and `complexity` in its metadata), "norm" and "ffn" (with the mixture-of-experts
variants of `moe/`). `build_layer` builds one
with its arguments checked; `TransformerBlock` assembles a pre-norm block from them.
"""
from labformer.layers import attention, ffn, moe, norm  # noqa: F401  (registers the variants)
from labformer.layers.build import ANY_TASK, build_layer  # noqa: F401
