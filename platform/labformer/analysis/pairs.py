"""Pair attribution for siamese encoders: integrated Jacobians (Moeller et al. 2023, "An Attribution Method
for Siamese Encoders"), which split the similarity s(a, b) = f(a) . g(b) over pairs of input features.

With the Jacobian integrated along the straight path from a baseline a0 to a,
    J_f(a) = int_0^1 df/dx (a0 + t (a - a0)) dt,   so   f(a) - f(a0) = J_f(a) (a - a0)   exactly,
the bilinear similarity splits over feature pairs (i of a, j of b):
    A_ij = (a - a0)_i [J_f(a)^T J_g(b)]_ij (b - b0)_j,
    sum_ij A_ij = s(a, b) - s(a0, b) - s(a, b0) + s(a0, b0)            (completeness).
The integral is the midpoint rule over `steps` points (exact for a linear encoder with any steps); features
are summed into groups afterwards (pixels -> patches, embedding dimensions -> tokens) through
U_a = sum over a group of J_f[:, i] (a - a0)_i, so A_group = U_a U_b^T never forms the pixel x pixel matrix.

For a contrastive checkpoint f = g = the encoder (backbone + the family's pooling, before any projector) and
s is the dot product of its features. Images start from a black image (the data's normalisation of 0),
tokens from zero token embeddings (the path runs through the embedding space; positions are kept).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from labformer.analysis.inputs import Job, family, is_images, patch_layout, patch_of_pixel, token_labels, unsupported
from labformer.analysis.outputs import display_image, save_figure, write_numbers
from labformer.utils.forecast_plot import pyplot

STEM = "pair_attribution"
Encode = Callable[[torch.Tensor], torch.Tensor]  # inputs [S, *shape] -> embeddings [S, E]


def integrated_jacobian(encode: Encode, x: torch.Tensor, x0: torch.Tensor, steps: int, chunk: int = 32) -> torch.Tensor:
    """[E, *x.shape]: the Jacobian of `encode` averaged over the midpoints of `steps` equal segments of x0 -> x."""
    alphas = (torch.arange(steps, dtype=x.dtype) + 0.5) / steps
    total: torch.Tensor | None = None
    with torch.enable_grad():
        for part in alphas.split(chunk):
            path = (x0 + part.view(-1, *[1] * x.ndim) * (x - x0)).detach().requires_grad_(True)
            out = encode(path)
            rows = [torch.autograd.grad(out[:, e].sum(), path, retain_graph=e + 1 < out.shape[1])[0].sum(0)
                    for e in range(out.shape[1])]
            total = torch.stack(rows) if total is None else total + torch.stack(rows)
    return total / steps


def _grouped(jac: torch.Tensor, delta: torch.Tensor, groups: torch.Tensor | None) -> torch.Tensor:
    """[G, E]: the columns of J (a - a0), summed per group (None: every feature its own group)."""
    per_feature = (jac.flatten(1) * delta.flatten()).T.double()
    if groups is None:
        return per_feature
    out = torch.zeros(int(groups.max()) + 1, per_feature.shape[1], dtype=per_feature.dtype)
    return out.index_add_(0, groups, per_feature)


@dataclass
class PairAttribution:
    matrix: torch.Tensor  # [groups of a, groups of b], float64
    similarities: dict[str, float]  # s(a,b), s(a0,b), s(a,b0), s(a0,b0)

    @property
    def expected(self) -> float:
        s = self.similarities
        return s["s_ab"] - s["s_a0b"] - s["s_ab0"] + s["s_a0b0"]

    @property
    def gap(self) -> float:
        """sum of the attributions - what completeness says it must be (-> 0 with more steps)."""
        return float(self.matrix.sum()) - self.expected


def pair_attribution(encode_a: Encode, a: torch.Tensor, a0: torch.Tensor, encode_b: Encode, b: torch.Tensor,
                     b0: torch.Tensor, steps: int = 64, groups_a: torch.Tensor | None = None,
                     groups_b: torch.Tensor | None = None) -> PairAttribution:
    u = _grouped(integrated_jacobian(encode_a, a, a0, steps), a - a0, groups_a)
    v = _grouped(integrated_jacobian(encode_b, b, b0, steps), b - b0, groups_b)
    with torch.no_grad():
        fa, fa0 = encode_a(torch.stack([a, a0])).double()
        fb, fb0 = encode_b(torch.stack([b, b0])).double()
    sims = {"s_ab": fa @ fb, "s_a0b": fa0 @ fb, "s_ab0": fa @ fb0, "s_a0b0": fa0 @ fb0}
    return PairAttribution(u @ v.T, {k: float(x) for k, x in sims.items()})


def embedding_encode(encoder: nn.Module, embedding: nn.Module, tokens: torch.Tensor) -> Encode:
    """An encoder of token embeddings [S, T, D]: `tokens` [T] run through `encoder` with `embedding`'s output
    replaced (so whatever follows the lookup, positions included, runs as in the model)."""
    def encode(e: torch.Tensor) -> torch.Tensor:
        handle = embedding.register_forward_hook(lambda m, args, out: e)
        try:
            return encoder(tokens.expand(len(e), -1))
        finally:
            handle.remove()
    return encode


# -- the command's tool: checks, picture, numbers ------------------------------------------------------------
def check(run: Any) -> None:
    if family(run) != "contrastive":
        raise unsupported("pairs", run, "pair attribution splits the similarity of a siamese encoder's two "
                          f"embeddings, and this checkpoint trained a {family(run)} model",
                          "Analyse a task=contrastive checkpoint (e.g. of python train.py task=contrastive)")
    encoder = run.module.encoder
    if encoder.modality not in ("vision", "lm"):
        raise unsupported("pairs", run, f"its {encoder.modality} encoder reads no pixels or tokens to pair",
                          "Use a vision or text contrastive run (e.g. data=digits or data=markov_classes)")
    if encoder.modality == "lm" and not isinstance(getattr(encoder.backbone, "token_embedding", None), nn.Module):
        raise unsupported("pairs", run, "its text backbone has no token_embedding to integrate along",
                          "Use model=gpt (or another LM backbone with a token embedding)")


def report(job: Job, steps: int = 64) -> tuple[list[str], list[Path]]:
    run = job.run
    check(run)
    encoder, dm = run.module.encoder, run.datamodule
    a, b = job.inputs[0], job.inputs[1]
    arrays: dict[str, Any] = {}
    if is_images(job.inputs):
        mean, std = getattr(dm, "mean", None), getattr(dm, "std", None)
        black = (-torch.tensor(mean) / torch.tensor(std)) if mean is not None and std is not None else 0.0
        a0 = torch.zeros_like(a) + torch.as_tensor(black, dtype=a.dtype).view(-1, 1, 1)
        _, grid, patch = patch_layout(encoder.backbone, tuple(a.shape[-2:]), run.config.model)
        groups = patch_of_pixel(tuple(a.shape), grid, patch)
        result = pair_attribution(encoder, a, a0, encoder, b, a0, steps, groups, groups)
        arrays.update(a=a, b=b, baseline=a0)
        labels_a = labels_b = [f"{i // grid[1]},{i % grid[1]}" for i in range(grid[0] * grid[1])]
    else:
        embedding = encoder.backbone.token_embedding
        with torch.no_grad():
            ea, eb = embedding(a), embedding(b)
        tokens = torch.arange(len(a)).repeat_interleave(ea.shape[-1])
        result = pair_attribution(embedding_encode(encoder, embedding, a), ea, torch.zeros_like(ea),
                                  embedding_encode(encoder, embedding, b), eb, torch.zeros_like(eb), steps,
                                  tokens, tokens)
        arrays.update(tokens_a=a, tokens_b=b)
        labels_a, labels_b, grid = token_labels(dm, a), token_labels(dm, b), None
    arrays.update(attribution=result.matrix, steps=steps, **result.similarities)
    flat = result.matrix.abs().flatten().argsort(descending=True)[:8].tolist()
    top = [{"a": i // result.matrix.shape[1], "b": i % result.matrix.shape[1],
            "a_name": labels_a[i // result.matrix.shape[1]], "b_name": labels_b[i % result.matrix.shape[1]],
            "attribution": float(result.matrix.flatten()[i])} for i in flat]
    summary = {"split": job.split, "items": [0, 1], "steps": steps, **result.similarities,
               "expected_sum": result.expected, "attribution_sum": float(result.matrix.sum()),
               "completeness_gap": result.gap, "top_pairs": top}
    png = _plot(job, result, labels_a, labels_b, top, grid)
    lines = [f"pair attribution of s(item 0, item 1) = {result.similarities['s_ab']:.4g} of the {job.split} split "
             f"over {result.matrix.shape[0]} x {result.matrix.shape[1]} {'patch' if grid else 'token'} pairs, "
             f"{steps} integration steps: the pairs sum to {float(result.matrix.sum()):.4g}, completeness says "
             f"{result.expected:.4g} (gap {result.gap:.2g}; more --steps shrink it)"]
    return lines, [png, *write_numbers(job.out, STEM, arrays, summary)]


def _plot(job: Job, result: PairAttribution, labels_a: list[str], labels_b: list[str], top: list[dict],
          grid: tuple[int, int] | None) -> Path:
    plt = pyplot()
    m = result.matrix.float().numpy()
    limit = max(float(abs(m).max()), 1e-12)
    fig, axes = plt.subplots(1, 2 if grid else 1, figsize=(10.0 if grid else 7.0, 4.6), squeeze=False)
    ax = axes[0, 0]
    image = ax.imshow(m, cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xlabel(f"item 1 {'patch (row,col)' if grid else 'token'}", fontsize=8)
    ax.set_ylabel(f"item 0 {'patch (row,col)' if grid else 'token'}", fontsize=8)
    if len(labels_a) <= 64 and len(labels_b) <= 64:
        ax.set_xticks(range(len(labels_b)), labels_b, fontsize=5, rotation=90, family="monospace")
        ax.set_yticks(range(len(labels_a)), labels_a, fontsize=5, family="monospace")
    ax.set_title("attribution of s(a,b) to input pairs", fontsize=8)
    if grid:  # the two images side by side, the strongest pairs joined
        ax = axes[0, 1]
        a, b = display_image(job.inputs[0]), display_image(job.inputs[1])
        h, w = a.shape[:2]
        ax.imshow(np.concatenate([a, b], axis=1), cmap="gray")
        ph, pw = h / grid[0], w / grid[1]
        for pair in top[:5]:
            (ya, xa), (yb, xb) = divmod(pair["a"], grid[1]), divmod(pair["b"], grid[1])
            ax.plot([(xa + 0.5) * pw - 0.5, w + (xb + 0.5) * pw - 0.5], [(ya + 0.5) * ph - 0.5, (yb + 0.5) * ph - 0.5],
                    color="tab:red" if pair["attribution"] > 0 else "tab:blue", lw=1.5, marker="o", ms=3)
        ax.set_title("item 0 | item 1: the 5 strongest pairs (red +, blue -)", fontsize=8)
        ax.axis("off")
    title = (f"pair attribution (integrated Jacobians): s(a,b)={result.similarities['s_ab']:.3g}, "
             f"sum of pairs={float(result.matrix.sum()):.3g}")
    return save_figure(fig, job.out / f"{STEM}.png", job.title(title))
