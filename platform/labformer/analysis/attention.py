"""Which modules form attention probabilities, and recording them during one forward pass.

Two kinds are read, each without reimplementing the model:
- the platform's softmax attention (layers/attention/softmax.py): its `record` switch makes it
  compute softmax(Q K^T / sqrt(d_h) + causal mask) explicitly (equal to its SDPA path) and keep it;
- timm's `Attention` (ViT blocks): its non-fused path forms the matrix and passes it through
  `attn_drop`, so with `fused_attn` off for the pass, a pre-hook on `attn_drop` reads exactly what
  timm computed (q/k norms and masks included).
Other mixers (performer, linear, fnet, linformer, ...) never form that matrix, or form it inside
code of their own (subclasses that replace `attend`/`forward`): they are reported as skipped.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
import torch.nn as nn

from labformer.errors import UserError
from labformer.layers.attention.softmax import SoftmaxAttention

ANALYSABLE = ("the platform's softmax attention (model.attention=softmax, e.g. gpt and the other backbones "
              "built from layers/block.py's TransformerBlock) and timm's ViT Attention (vit_nano, vit_tiny, "
              "vit_small and the vision backbones built from timm's ViT blocks)")


def _timm_attention() -> type | None:
    try:  # timm comes with the vision family; an LM-only analysis does not need it
        from timm.layers import Attention
    except ImportError:
        return None
    return Attention


def recordable(module: nn.Module, timm_attention: type | None) -> bool:
    """Only the classes whose computation the recorder knows: subclasses replacing it are not read."""
    if isinstance(module, SoftmaxAttention):
        return type(module).attend is SoftmaxAttention.attend
    if timm_attention is not None and isinstance(module, timm_attention):
        return type(module).forward is timm_attention.forward
    return False


def _mixer_classes() -> tuple[type, ...]:
    from labformer import registry

    return tuple(e.builder for e in registry.entries("attention") if isinstance(e.builder, type))


@dataclass
class Found:
    recorded: list[tuple[str, nn.Module]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (module name, class name)

    def skipped_lines(self) -> list[str]:
        by_class: dict[str, list[str]] = {}
        for name, cls in self.skipped:
            by_class.setdefault(cls, []).append(name)
        lines = []
        for cls, names in by_class.items():
            shown = ", ".join(names[:3]) + (f", ... ({len(names)} in all)" if len(names) > 3 else "")
            lines.append(f"skipped {cls} ({shown}): it forms no query x key probability matrix "
                         "that can be recorded")
        return lines


def find_attention(model: nn.Module) -> Found:
    """Recordable attention modules in model order, and the other attention-like modules (skipped)."""
    timm_attention, mixers = _timm_attention(), _mixer_classes()
    found = Found()
    for name, module in model.named_modules():
        if not name:
            continue
        if recordable(module, timm_attention):
            found.recorded.append((name, module))
        elif isinstance(module, mixers) or "attention" in type(module).__name__.lower():
            found.skipped.append((name, type(module).__name__))
    # Report the outermost skipped modules only, and neither wrappers of recorded ones nor their parts.
    recorded = [n for n, _ in found.recorded]
    skipped = [n for n, _ in found.skipped]

    def related(name: str, others: list[str]) -> bool:
        return any(name.startswith(o + ".") or o.startswith(name + ".") for o in others)

    found.skipped = [(n, c) for n, c in found.skipped
                     if not related(n, recorded) and not any(n.startswith(s + ".") for s in skipped)]
    return found


def nothing_to_record(model_config: Any, found: Found,
                      can: str = "Attention maps can be recorded from") -> UserError:
    model = model_config.get("name", "?")
    attention = model_config.get("attention")
    what = f"model={model}" + (f" (model.attention={attention})" if attention else "")
    if found.skipped:
        mixers = ", ".join(sorted({c for _, c in found.skipped}))
        why = f"its attention ({mixers}) never forms a query x key probability matrix that can be recorded"
    else:
        why = "none of its modules is an attention module whose probabilities can be recorded"
    fix = " Retrain with model.attention=softmax to analyse its attention." if attention else ""
    return UserError(f"{what} has no attention to analyse: {why}. {can} {ANALYSABLE}.{fix}")


@contextmanager
def recording(found: Found) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Within: every call of a recorded module appends (name, probabilities [B, H, Q, K]), in call order
    (a module shared by several blocks gives one entry per call). On exit the modules are as before."""
    calls: list[tuple[str, torch.Tensor]] = []
    handles, fused = [], []
    for name, module in found.recorded:
        if isinstance(module, SoftmaxAttention):
            module.record = True
            handles.append(module.register_forward_hook(
                lambda mod, args, out, name=name: calls.append((name, mod.probs))))
        else:
            fused.append((module, module.fused_attn))
            module.fused_attn = False  # timm's own non-fused path forms the probabilities
            handles.append(module.attn_drop.register_forward_pre_hook(
                lambda mod, args, name=name: calls.append((name, args[0].detach()))))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()
        for _, module in found.recorded:
            module.__dict__.pop("record", None)  # back to the class default: the fused path
            module.__dict__.pop("probs", None)
        for module, was in fused:
            module.fused_attn = was


def record_attention(model: nn.Module, inputs: Any, found: Found) -> list[tuple[str, torch.Tensor]]:
    """(layer name, probabilities [items, heads, queries, keys]) of every recorded call of one forward."""
    with recording(found) as calls, torch.no_grad():
        model(inputs)
    seen: dict[str, int] = {}
    layers = []
    for name, probs in calls:
        seen[name] = seen.get(name, 0) + 1
        layers.append((name if seen[name] == 1 else f"{name} (call {seen[name]})", probs.float().cpu()))
    return layers
