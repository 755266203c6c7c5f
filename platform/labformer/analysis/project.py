"""Embedding-space projection, the "logit lens" (Dar et al. 2023, "Analyzing Transformers in Embedding Space").

Hidden states: the residual stream h_l after block l (l = 0: the embeddings entering block 0) read out as the
model reads its last one, so the last layer's projection is the model's own logits:
    lm:      logits_l = s(N_f(h_l) E^T)            E: the unembedding (tied: the token embedding), N_f: the
                                                   final norm, s: the backbone's logit scale (nGPT's s_z)
    vision:  logits_l = head(pool(N(h_l)))         timm ViT: final norm, class-token (or mean) pooling and
                                                   fc_norm, then the task's linear head
Parameters (lm): FFN neuron j of block l adds W_out[:, j] to the stream; W_out[:, j] E^T ranks the tokens it
promotes (Dar et al. project the FFN values with E alone, no norm); shown for the largest-norm neurons.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from labformer.analysis.inputs import Job, family, token_labels, unsupported
from labformer.analysis.outputs import save_figure, write_numbers
from labformer.utils.forecast_plot import pyplot

STEM = "logit_lens"
FFN_OUT = ("ffn.out_proj", "mlp_out", "mlp.fc2")  # GPT blocks' FFNs, nGPT, timm's Mlp
TOP = 5


def _vit() -> type | None:
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        return None
    return VisionTransformer


def check(run: Any) -> None:
    backbone = getattr(run.module, "backbone", None)
    if family(run) == "lm":
        if not isinstance(getattr(backbone, "blocks", None), nn.ModuleList):
            raise unsupported("project", run, "the projection reads the residual stream between the backbone's "
                              "`blocks`, and this backbone has none", "Use an LM backbone built of blocks "
                              "(model=gpt, ngpt, all_attention)")
    elif family(run) == "vision":
        vit = _vit()
        if vit is None or not isinstance(backbone, vit):
            raise unsupported("project", run, "the projection reads a ViT's residual stream through its final "
                              "norm, pooling and head, and this backbone is not a timm VisionTransformer",
                              "Use a ViT backbone (model=vit_nano, vit_tiny, vit_small, vit_moe, ...)")
    else:
        raise unsupported("project", run, "it projects hidden states onto the vocabulary or the classes, and a "
                          f"{family(run)} checkpoint has neither", "Analyse a task=lm or task=vision checkpoint")


def readout(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map the model applies to its last hidden state, for any layer's hidden state."""
    backbone = module.backbone
    if family_of(module) == "vision":
        return lambda h: module.head(backbone.forward_head(backbone.norm(h), pre_logits=True))
    norm = getattr(backbone, "norm", None)
    final = norm if isinstance(norm, nn.Module) else nn.Identity()
    if getattr(module, "objective", "causal_lm") == "classification":
        return lambda h: module.head(final(h).mean(1))
    return lambda h: backbone.scale_logits(module.head(final(h)))


def family_of(module: nn.Module) -> str:
    vit = _vit()
    return "vision" if vit is not None and isinstance(module.backbone, vit) else "lm"


def hidden_states(module: nn.Module, inputs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """([h_0, h_1, ..., h_L]: the input of block 0 and every block's output, the model's logits), one pass."""
    blocks = module.backbone.blocks
    seen: list[torch.Tensor] = []
    keep = lambda out: seen.append(out[0] if isinstance(out, tuple) else out)  # noqa: E731
    handles = [blocks[0].register_forward_pre_hook(lambda m, args: keep(args[0]))]
    handles += [block.register_forward_hook(lambda m, args, out: keep(out)) for block in blocks]
    try:
        with torch.no_grad():
            logits = module(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return seen[:len(blocks) + 1], logits


def project(module: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(every layer's projection [L+1, *logits.shape], the model's logits)."""
    hidden, logits = hidden_states(module, inputs)
    read = readout(module)
    with torch.no_grad():
        return torch.stack([read(h) for h in hidden]).float(), logits.float()


def neuron_projections(module: nn.Module, per_layer: int = 4) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """Per block with a linear FFN output: (block, its `per_layer` largest-norm neurons, their W_out[:, j] E^T)."""
    unembed = module.head.weight  # [V, D]
    out = []
    for i, block in enumerate(module.backbone.blocks):
        for path in FFN_OUT:
            try:
                linear = block.get_submodule(path)
            except AttributeError:
                continue
            if isinstance(linear, nn.Linear) and linear.weight.shape[0] == unembed.shape[1]:
                w = linear.weight.detach()  # [D, hidden]: column j is neuron j's value vector
                idx = w.norm(dim=0).topk(min(per_layer, w.shape[1])).indices
                out.append((i, idx, (w[:, idx].T @ unembed.detach().T).float()))
                break
    return out


def report(job: Job) -> tuple[list[str], list[Path]]:
    run = job.run
    check(run)
    inputs, dm = job.inputs, run.datamodule
    layers, logits = project(run.module, inputs)
    names = ["embedding"] + [f"block {i}" for i in range(len(layers) - 1)]
    gap = float((layers[-1] - logits).abs().max())
    probs = layers.softmax(-1)
    top = probs.topk(min(TOP, probs.shape[-1]), dim=-1)
    summary: dict[str, Any] = {"split": job.split, "layers": names, "last_layer_max_abs_diff": gap}
    if logits.ndim == 3:  # next-token logits [N, T, V]
        arrays = {"logits": layers[:, 0], "model_logits": logits[0], "tokens": inputs,
                  "top_ids": top.indices, "top_probs": top.values}
        summary["item0_top_tokens"] = {name: [token_labels(dm, top.indices[layer, 0, t, :1])[0]
                                              for t in range(inputs.shape[1])] for layer, name in enumerate(names)}
        neurons = neuron_projections(run.module)
        summary["neurons"] = []
        for block, idx, proj in neurons:
            arrays[f"neurons_block{block}"], arrays[f"neuron_logits_block{block}"] = idx, proj
            for j, row in zip(idx.tolist(), proj):
                summary["neurons"].append({"block": block, "neuron": j, "top_tokens":
                                           token_labels(dm, row.topk(min(TOP, len(row))).indices)})
        png = _plot_tokens(job, names, top, token_labels(dm, inputs[0]))
    else:  # class logits [N, C]
        arrays = {"logits": layers, "model_logits": logits, "probs": probs}
        summary["item_predictions"] = {name: probs[layer].argmax(-1).tolist() for layer, name in enumerate(names)}
        png = _plot_classes(job, names, probs)
    lines = [f"projection of {len(names)} residual-stream states ({', '.join(names[:2])}, ...) of {len(inputs)} "
             f"{job.split} items onto the {'vocabulary' if logits.ndim == 3 else 'classes'}; the last one differs "
             f"from the model's logits by at most {gap:.2g}"]
    if gap > 1e-3:
        lines.append("  note: this backbone does more after its blocks than the read-out applied here")
    return lines, [png, *write_numbers(job.out, STEM, arrays, summary)]


def _plot_tokens(job: Job, names: list[str], top: Any, labels: list[str]) -> Path:
    plt = pyplot()
    t = len(labels)
    shown = list(range(max(0, t - 24), t))  # a long context: its last 24 positions
    ids, values = top.indices[:, 0, shown, 0], top.values[:, 0, shown, 0].numpy()
    fig, ax = plt.subplots(figsize=(0.55 * len(shown) + 2.0, 0.45 * len(names) + 1.6))
    top = max(float(values.max()), 1e-6)  # an early checkpoint's probabilities are all small
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=top, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    for r in range(len(names)):
        for c, label in enumerate(token_labels(job.run.datamodule, ids[r])):
            ax.text(c, r, label[:6], ha="center", va="center", fontsize=6, family="monospace",
                    color="white" if values[r, c] < 0.5 * top else "black")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xticks(range(len(shown)), [labels[i] for i in shown], fontsize=7, family="monospace")
    ax.set_xlabel("input token at the position (item 0); cells: top next token per layer, colour: its probability",
                  fontsize=7)
    return save_figure(fig, job.out / f"{STEM}.png", job.title("logit lens: each layer's hidden state through the "
                                                                 "final norm and the unembedding"))


def _plot_classes(job: Job, names: list[str], probs: torch.Tensor) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(0.45 * probs.shape[-1] + 2.5, 0.45 * len(names) + 1.6))
    image = ax.imshow(probs[:, 0].numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xticks(range(probs.shape[-1]))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("class (item 0)", fontsize=8)
    return save_figure(fig, job.out / f"{STEM}.png", job.title("class probabilities read from each layer "
                                                                 "(final norm, pooling and head)"))
