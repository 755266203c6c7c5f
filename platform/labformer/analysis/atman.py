"""AtMan (Deiseroth et al., NeurIPS 2023): how much a prediction relies on each input token, by suppressing
the attention to that token in every layer and head and measuring how much the prediction's loss grows.

    H~ = H * (1 - f^i)            H: pre-softmax scores Q K^T / sqrt(d_h) [.., query, key], before the mask
    f^i_k = p                     for k = i (p ~ 0.9)
    f^i_k = p * cos(x_i, x_k)     for the other tokens k with cos(x_i, x_k) >= kappa (the paper's spreading
                                  to correlated tokens, optional; x = what the first attention layer reads)
    relevance_i = CE(y | H~) - CE(y | H)

y is the model's own prediction: the argmax class (vision, sequence classification), or for a language model
the argmax next token at the last position; a language model also gets, per position t, the relevance for
the data's next token x_{t+1} (the same forwards give it). One forward per suppressed token, batched, no
gradients: the memory of inference.

The suppression is a switch, not a model of our own: the platform's softmax attention multiplies its scores
(`SoftmaxAttention.suppress`); timm's Attention runs its non-fused path, where the probabilities P entering
`attn_drop` are replaced by softmax(log P - (1 - f) * Q K^T * scale), which equals softmax(H * f + mask)
for whatever mask timm added (exactly: the mask and the row's normaliser cancel).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.analysis.attention import Found, find_attention, nothing_to_record
from labformer.analysis.inputs import Job, family, is_images, patch_layout, token_labels, unsupported
from labformer.analysis.outputs import display_image, save_figure, write_numbers
from labformer.errors import UserError
from labformer.layers.attention.softmax import SoftmaxAttention
from labformer.utils.forecast_plot import pyplot

STEM = "atman_relevance"


def _suppressed_probs(probs: torch.Tensor, q: torch.Tensor, k: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    scores = q @ k.transpose(-2, -1)
    return (probs.log() - (1 - factors[:, None, None, :].to(scores.dtype)) * scores).softmax(-1)


@contextmanager
def suppressing(found: Found, factors: torch.Tensor) -> Iterator[None]:
    """Within: every recorded attention module (attention.find_attention) multiplies the pre-softmax score of
    item b's queries to key k by factors[b, k]; on exit the modules are as before."""
    handles, fused = [], []
    for _, module in found.recorded:
        if isinstance(module, SoftmaxAttention):
            module.suppress = factors
            continue
        fused.append((module, module.fused_attn))
        module.fused_attn = False  # timm's own non-fused path forms the probabilities
        qk: dict[str, torch.Tensor] = {}
        handles += [module.q_norm.register_forward_hook(lambda m, a, out, qk=qk: qk.__setitem__("q", out)),
                    module.k_norm.register_forward_hook(lambda m, a, out, qk=qk: qk.__setitem__("k", out)),
                    module.attn_drop.register_forward_pre_hook(
                        lambda m, args, qk=qk, scale=module.scale: (
                            _suppressed_probs(args[0], qk["q"] * scale, qk["k"], factors),))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for _, module in found.recorded:
            for key in ("suppress", "probs"):  # back to the class defaults
                module.__dict__.pop(key, None)
        for module, was in fused:
            module.fused_attn = was


@dataclass
class Relevance:
    keys: list[int]  # the suppressed token positions (attention key indices)
    target: torch.Tensor  # [N] the explained prediction: class or next token
    relevance: torch.Tensor  # [N, len(keys)] loss increase of the target when each key is suppressed
    positions: torch.Tensor | None  # LM: [N, T-1, len(keys)], loss increase of x_{t+1} at position t


def _losses(logits: torch.Tensor, inputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """(CE of `target` at the explained output [rows], LM: CE of the next input token per position [rows, T-1])."""
    if logits.ndim == 2:
        return F.cross_entropy(logits.float(), target, reduction="none"), None
    last = F.cross_entropy(logits[:, -1].float(), target, reduction="none")
    nxt = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), inputs[:, 1:].flatten(), reduction="none")
    return last, nxt.view(len(inputs), -1)


def first_layer_input(model: nn.Module, inputs: Any, found: Found) -> tuple[torch.Tensor, torch.Tensor]:
    """(the model's logits, what the first attention module reads [N, K, D]) in one forward pass."""
    seen: dict[str, torch.Tensor] = {}
    handle = found.recorded[0][1].register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    try:
        with torch.no_grad():
            logits = model(inputs)
    finally:
        handle.remove()
    return logits, seen["x"]


def factor_rows(x: torch.Tensor, keys: list[int], p: float, kappa: float | None) -> torch.Tensor:
    """[len(keys), K]: row r suppresses key keys[r] by p and, with kappa, the other keys among `keys` whose
    representation x [K, D] has cosine similarity s >= kappa with it, by p * s."""
    rows = torch.ones(len(keys), x.shape[0])
    idx = torch.tensor(keys)
    if kappa is not None:
        unit = F.normalize(x[idx].float(), dim=-1)
        sim = (unit @ unit.T).clamp(-1, 1)
        spread = torch.where(sim >= kappa, 1 - p * sim, torch.ones_like(sim))
        rows[:, idx] = spread
    rows[torch.arange(len(keys)), idx] = 1 - p
    return rows


def atman(model: nn.Module, inputs: torch.Tensor, found: Found,
          keys: list[int] | Callable[[int], list[int]] | None = None, p: float = 0.9, kappa: float | None = None,
          chunk: int = 32) -> Relevance:
    """Relevance of the tokens `keys` (default: every attention key; a function: of the key count) to each
    item's prediction.

    Each relevance is the difference of two forwards of the same shape through the same explicit attention
    path (suppressed vs. factors of one), so nothing but the suppression differs: with p=0 it is exactly 0.
    """
    logits, x = first_layer_input(model, inputs, found)
    target = (logits[:, -1] if logits.ndim == 3 else logits).argmax(-1)
    keys = list(range(x.shape[1])) if keys is None else keys(x.shape[1]) if callable(keys) else keys
    relevance, positions = torch.zeros(len(inputs), len(keys)), None
    if logits.ndim == 3:
        positions = torch.zeros(len(inputs), inputs.shape[1] - 1, len(keys))

    def run(item: torch.Tensor, factors: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
        with suppressing(found, factors), torch.no_grad():
            return _losses(model(item.expand(len(factors), *item.shape[1:])), item.expand(len(factors), -1)
                           if item.ndim == 2 else item, y.expand(len(factors)))

    for b in range(len(inputs)):
        rows = factor_rows(x[b], keys, p, kappa)
        item, y = inputs[b:b + 1], target[b:b + 1]
        for start in range(0, len(keys), chunk):
            part = rows[start:start + chunk]
            base = run(item, torch.ones_like(part), y)
            hit = run(item, part, y)
            relevance[b, start:start + len(part)] = hit[0] - base[0]
            if positions is not None:
                positions[b, :, start:start + len(part)] = (hit[1] - base[1]).T
    return Relevance(keys, target, relevance, positions)


# -- the command's tool: checks, picture, numbers ------------------------------------------------------------
def check(run: Any, p: float, kappa: float | None) -> Found:
    """Before any data is read: the run has a prediction to explain and attention that can be suppressed."""
    if not 0 <= p <= 1 or (kappa is not None and not -1 <= kappa <= 1):
        raise UserError(f"--suppression {p} / --kappa {kappa}: AtMan needs 0 <= p <= 1 (0.9 in the paper) and "
                        "-1 <= kappa <= 1 (e.g. 0.7; leave it out to suppress one token at a time)")
    if family(run) not in ("vision", "lm"):
        fix = "Use --pairs for a siamese encoder's similarity." if family(run) == "contrastive" else ""
        raise unsupported("atman", run, "AtMan explains the loss of a prediction (a class or the next token), "
                          "and only task=vision and task=lm checkpoints predict one",
                          f"Analyse a task=vision or task=lm checkpoint. {fix}".strip())
    found = find_attention(run.module)
    if not found.recorded:
        raise nothing_to_record(run.config.model, found, can="AtMan can suppress the attention of")
    return found


def report(job: Job, p: float = 0.9, kappa: float | None = None) -> tuple[list[str], list[Path]]:
    run, inputs = job.run, job.inputs
    found = check(run, p, kappa)
    grid = None
    if is_images(inputs):
        def keys(k: int) -> list[int]:
            nonlocal grid
            prefix, grid, _ = patch_layout(run.module.backbone, tuple(inputs.shape[-2:]), run.config.model, k)
            return list(range(prefix, k))  # the patches; the class and register tokens stay
    else:
        keys = None
    result = atman(run.module, inputs, found, keys, p, kappa)
    arrays: dict[str, Any] = {"relevance": result.relevance, "target": result.target,
                              "keys": torch.tensor(result.keys)}
    summary: dict[str, Any] = {"p": p, "kappa": kappa, "split": job.split, "items": []}
    if grid is not None:
        arrays["relevance_map"] = result.relevance.view(len(inputs), *grid)
        png = _plot_images(job, result, grid)
        patches = [f"patch {i // grid[1]},{i % grid[1]}" for i in range(len(result.keys))]
        names = lambda b: patches  # noqa: E731
        targets = [f"class {int(t)}" for t in result.target]
    else:
        arrays["tokens"] = inputs
        if result.positions is not None:
            arrays["relevance_positions"] = result.positions
        png = _plot_tokens(job, result)
        names = lambda b: token_labels(run.datamodule, inputs[b])  # noqa: E731
        targets = (token_labels(run.datamodule, result.target) if result.positions is not None
                   else [f"class {int(t)}" for t in result.target])
    for b in range(len(inputs)):
        order, labels = result.relevance[b].argsort(descending=True)[:5].tolist(), names(b)
        tops = [{"key": result.keys[i], "name": labels[i], "relevance": float(result.relevance[b, i])}
                for i in order]
        summary["items"].append({"target": int(result.target[b]), "target_name": targets[b], "top": tops})
    files = [png, *write_numbers(job.out, STEM, arrays, summary)]
    lines = [f"AtMan relevance (p={p}" + (f", kappa={kappa}" if kappa is not None else "")
             + f") of {len(result.keys)} tokens for {len(inputs)} {job.split} items, {len(found.recorded)} "
             "attention layers suppressed", *found.skipped_lines()]
    return lines, files


def _plot_images(job: Job, result: Relevance, grid: tuple[int, int]) -> Path:
    plt = pyplot()
    n = min(4, len(job.inputs))
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.0), squeeze=False)
    for b, ax in enumerate(axes[0]):
        image = display_image(job.inputs[b])
        heat = result.relevance[b].view(1, 1, *grid)
        heat = F.interpolate(heat, size=image.shape[:2], mode="nearest")[0, 0].numpy()
        ax.imshow(image, cmap="gray")
        limit = max(float(abs(heat).max()), 1e-12)
        ax.imshow(heat, cmap="coolwarm", vmin=-limit, vmax=limit, alpha=0.55)
        ax.set_title(f"item {b}: class {int(result.target[b])}", fontsize=8)
        ax.axis("off")
    return save_figure(fig, job.out / f"{STEM}.png", job.title("AtMan: loss increase of the predicted class "
                                                                 "when a patch is suppressed (red: relied on)"))


def _plot_tokens(job: Job, result: Relevance) -> Path:
    plt = pyplot()
    labels = token_labels(job.run.datamodule, job.inputs[0])
    shown = slice(max(0, len(labels) - 64), len(labels))  # a long context: its last 64 tokens
    rel = result.relevance[0, shown].numpy()
    panels = 2 if result.positions is not None else 1
    fig, axes = plt.subplots(panels, 1, figsize=(max(6.0, 0.22 * len(rel) + 1.5), 3.2 * panels), squeeze=False)
    ax = axes[0, 0]
    ax.bar(range(len(rel)), rel, color=["tab:red" if r > 0 else "tab:blue" for r in rel])
    ax.set_xticks(range(len(rel)), labels[shown], fontsize=7, family="monospace")
    target = token_labels(job.run.datamodule, result.target[:1])[0] if result.positions is not None \
        else f"class {int(result.target[0])}"
    ax.set_ylabel("loss increase", fontsize=8)
    ax.set_title(f"item 0: relevance of each input token for the prediction '{target}'", fontsize=8)
    if result.positions is not None:
        ax = axes[1, 0]
        grid = result.positions[0].numpy()
        limit = max(float(abs(grid).max()), 1e-12)
        ax.imshow(grid, cmap="coolwarm", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
        ax.set_xlabel("suppressed token", fontsize=8)
        ax.set_ylabel("position t (target x[t+1])", fontsize=8)
        ax.set_title("per position: loss increase of the data's next token", fontsize=8)
    return save_figure(fig, job.out / f"{STEM}.png", job.title("AtMan relevance"))
