"""Build a registered layer (attention / norm / ffn) with its config values checked."""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from labformer import registry
from labformer.utils.arguments import check_arguments

# Layers serve every family; the registry wants a task name, so they carry this one.
ANY_TASK = "any"


def build_layer(kind: str, name: str, where: str, **kwargs: Any) -> nn.Module:
    """`registry.get(name, kind)` (unknown names list close matches) then build with `kwargs`.

    Classes are checked against `__init__` (its type hints), so a typo in e.g.
    `model.attention_kwargs` names the key and the valid settings.
    """
    entry = registry.get(name, kind=kind)
    builder = entry.builder
    check_arguments(builder.__init__ if isinstance(builder, type) else builder, kwargs, where=where)
    return builder(**kwargs)


def names(kind: str, **meta: Any) -> list[str]:
    """Registered names of `kind` whose metadata has all of `meta` (e.g. causal=True)."""
    return [e.name for e in registry.entries(kind) if all(e.meta.get(k) == v for k, v in meta.items())]
