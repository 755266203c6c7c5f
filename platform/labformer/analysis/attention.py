"""Which modules form attention probabilities, and recording them during one forward pass.

Each kind is read without changing what the model computes:
- the platform's softmax attention (layers/attention/softmax.py): its `record` switch makes it
  compute softmax(Q K^T / sqrt(d_h) + causal mask) explicitly (equal to its SDPA path) and keep it;
- TokenGT's PaddedSoftmax (models/graph/tokengt.py): the same explicit math with its key padding mask,
  beside its own SDPA call, whose output the model keeps;
- timm's `Attention` (ViT blocks): its non-fused path forms the matrix and passes it through
  `attn_drop`, so with `fused_attn` off for the pass, a pre-hook on `attn_drop` reads exactly what
  timm computed (q/k norms and masks included);
- the time-series encoders' SelfAttention (models/timeseries/blocks.py: itransformer, patchtst,
  transformer): SDPA without mask at the default scale, so softmax(Q K^T / sqrt(d_h)) of the q/k
  that its own `qkv` produced (a hook on that projection);
- attention over a graph's edges, Exphormer's and PyG's GATConv/GATv2Conv/TransformerConv: each is
  asked for the coefficients it already computes (return_attention[_weights]) and the caller gets
  the output it asked for; record_maps (graph_maps.py) makes them a query x key matrix.
Other mixers (performer, linear, fnet, linformer, ...) never form that matrix, or form it inside
code of their own (subclasses that replace `attend`/`forward`): they are reported as skipped.
"""
from __future__ import annotations

import inspect
import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple

import torch
import torch.nn as nn

from labformer.errors import UserError
from labformer.layers.attention.softmax import SoftmaxAttention

ANALYSABLE = ("the platform's softmax attention (model.attention=softmax, e.g. gpt and the other backbones "
              "built from layers/block.py's TransformerBlock, and model=tokengt), timm's ViT Attention (vit_nano, "
              "vit_tiny, vit_small and the vision backbones built from timm's ViT blocks), the time-series "
              "encoders' attention (itransformer, patchtst, transformer) and graph attention over edges "
              "(model=exphormer, and PyG's GATConv/GATv2Conv/TransformerConv as in model=gat)")
GRAPH_MODELS = "model=exphormer (the task=graph default), model=tokengt or model=gat"


class Call(NamedTuple):
    """One recorded call. Dense: probs [B, H, Q, K]. Over edges: probs [E, H], one coefficient per
    (query, key) token pair in `pairs` [2, E]. keep [B, T]: the real tokens of a padded batch."""
    name: str
    probs: torch.Tensor
    keep: torch.Tensor | None = None
    pairs: torch.Tensor | None = None


def _timm_attention() -> type | None:
    try:  # timm comes with the vision family; an LM-only analysis does not need it
        from timm.layers import Attention
    except ImportError:
        return None
    return Attention


def _loaded(module: str, name: str) -> type | None:
    """A class of a module imported already: a model holding one has imported it, so nothing else pays for it."""
    return getattr(sys.modules.get(module), name, None)


def _edge_classes() -> list[tuple[type, str]]:
    """(edge attention class, the forward argument that makes it return its coefficients)."""
    found = [(c, "return_attention") for c in [_loaded("labformer.models.graph.exphormer", "ExphormerAttention")] if c]
    pyg = sys.modules.get("torch_geometric.nn")
    return found + [(getattr(pyg, n), "return_attention_weights") for n in ("GATConv", "GATv2Conv", "TransformerConv")
                    if hasattr(pyg, n)]


def kind_of(module: nn.Module, timm_attention: type | None) -> str | None:
    """softmax | padded | timm | series | edges: a class whose computation the recorder knows, else None
    (subclasses replacing that computation are not read)."""
    cls = type(module)
    if isinstance(module, SoftmaxAttention):
        padded = _loaded("labformer.models.graph.tokengt", "PaddedSoftmax")
        if cls.attend is SoftmaxAttention.attend:
            return "softmax"
        return "padded" if padded is not None and cls.attend is padded.attend else None
    if timm_attention is not None and isinstance(module, timm_attention):
        return "timm" if cls.forward is timm_attention.forward else None
    series = _loaded("labformer.models.timeseries.blocks", "SelfAttention")
    if series is not None and isinstance(module, series):
        return "series" if cls.forward is series.forward else None
    for base, _ in _edge_classes():
        if isinstance(module, base):
            return "edges" if all(getattr(cls, m) is getattr(base, m) for m in ("forward", "message")) else None
    return None


def recordable(module: nn.Module, timm_attention: type | None) -> bool:
    return kind_of(module, timm_attention) is not None


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
                      can: str = "Attention maps can be recorded from", task: str | None = None) -> UserError:
    model = model_config.get("name", "?")
    attention = model_config.get("attention")
    what = f"model={model}" + (f" (model.attention={attention})" if attention else "")
    if found.skipped:
        mixers = ", ".join(sorted({c for _, c in found.skipped}))
        why = f"its attention ({mixers}) never forms a query x key probability matrix that can be recorded"
    else:
        why = "none of its modules is an attention module whose probabilities can be recorded"
    fix = " Retrain with model.attention=softmax to analyse its attention." if attention else ""
    if task == "graph":  # graph models choose their attention by model=, not model.attention=
        fix += f" For task=graph, analyse a run of {GRAPH_MODELS}."
    return UserError(f"{what} has no attention to analyse: {why}. {can} {ANALYSABLE}.{fix}")


def _series_hook(name: str, module: nn.Module, calls: list[Call]) -> Callable[[], None]:
    def hook(proj: nn.Module, args: Any, out: torch.Tensor) -> None:
        b, n, _ = out.shape
        q, k, _ = out.view(b, n, 3, module.num_heads, -1).permute(2, 0, 3, 1, 4)
        calls.append(Call(name, (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1).detach()))

    return module.qkv.register_forward_hook(hook).remove


def _padded_attend(name: str, module: nn.Module, calls: list[Call]) -> Callable[[], None]:
    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        keep = module.key_mask
        if keep is not None:
            scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        calls.append(Call(name, scores.softmax(-1).detach(), keep=keep))
        return type(module).attend(module, q, k, v)  # the model keeps its own output

    module.attend = attend  # shadows the class's method for this module only
    return lambda: module.__dict__.pop("attend", None)


def _edge_hooks(name: str, module: nn.Module, flag: str, calls: list[Call]) -> Callable[[], None]:
    slot = list(inspect.signature(type(module).forward).parameters).index(flag) - 1  # without self
    asked: dict[str, Any] = {}

    def before(mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if len(args) > slot:
            asked["flag"], args = args[slot], args[:slot] + (True,) + args[slot + 1:]
        else:
            asked["flag"], kwargs = kwargs.get(flag), {**kwargs, flag: True}
        asked["edges"] = args[1] if len(args) > 1 else kwargs["edge_index"]
        return args, kwargs

    def after(mod: nn.Module, args: tuple, kwargs: dict, out: Any) -> Any:
        y, coefficients = out
        # PyG's convolutions return (edge_index with the self-loops they added, alpha); Exphormer alpha alone
        edges, alpha = coefficients if isinstance(coefficients, tuple) else (asked["edges"], coefficients)
        query, key = (edges[1], edges[0]) if mod.flow == "source_to_target" else (edges[0], edges[1])
        calls.append(Call(name, alpha.detach().reshape(len(alpha), -1), pairs=torch.stack([query, key])))
        return out if asked["flag"] else y

    handles = [module.register_forward_pre_hook(before, with_kwargs=True),
               module.register_forward_hook(after, with_kwargs=True)]
    return lambda: [h.remove() for h in handles]


@contextmanager
def recording(found: Found) -> Iterator[list[Call]]:
    """Within: every call of a recorded module appends a Call (name, probabilities [B, H, Q, K], ...), in
    call order (a module shared by several blocks gives one entry per call). On exit the modules are as before."""
    calls: list[Call] = []
    undo: list[Callable[[], Any]] = []
    timm_attention, edges = _timm_attention(), dict(_edge_classes())
    for name, module in found.recorded:
        kind = kind_of(module, timm_attention)
        if kind == "softmax":
            module.record = True
            undo.append(module.register_forward_hook(
                lambda mod, args, out, name=name: calls.append(Call(name, mod.probs))).remove)
        elif kind == "padded":
            undo.append(_padded_attend(name, module, calls))
        elif kind == "series":
            undo.append(_series_hook(name, module, calls))
        elif kind == "edges":
            flag = next(f for c, f in edges.items() if isinstance(module, c))
            undo.append(_edge_hooks(name, module, flag, calls))
        else:
            was = module.fused_attn
            module.fused_attn = False  # timm's own non-fused path forms the probabilities
            undo.append(lambda module=module, was=was: setattr(module, "fused_attn", was))
            undo.append(module.attn_drop.register_forward_pre_hook(
                lambda mod, args, name=name: calls.append(Call(name, args[0].detach()))).remove)
    try:
        yield calls
    finally:
        for step in undo:
            step()
        for _, module in found.recorded:
            module.__dict__.pop("record", None)  # back to the class default: the fused path
            module.__dict__.pop("probs", None)


@dataclass
class Maps:
    layers: list[tuple[str, torch.Tensor]]  # (layer name, probabilities [items, heads, queries, keys])
    tokens: str = ""  # what the queries and keys are, where the items are not a plain batch (graphs)


def record_maps(model: nn.Module, inputs: Any, found: Found, limit: int = 64) -> Maps:
    """The maps of one forward pass; a graph batch gives graph 0's tokens, at most `limit` of them."""
    with recording(found) as calls, torch.no_grad():
        model(inputs)
    seen: dict[str, int] = {}
    named = []
    for call in calls:
        seen[call.name] = seen.get(call.name, 0) + 1
        named.append(call._replace(name=call.name if seen[call.name] == 1 else f"{call.name} (call {seen[call.name]})"))
    if isinstance(inputs, torch.Tensor):
        return Maps([(c.name, c.probs.float().cpu()) for c in named])
    from labformer.analysis.graph_maps import first_graph

    return first_graph(named, inputs, limit)


def record_attention(model: nn.Module, inputs: Any, found: Found) -> list[tuple[str, torch.Tensor]]:
    """(layer name, probabilities [items, heads, queries, keys]) of every recorded call of one forward."""
    return record_maps(model, inputs, found).layers
