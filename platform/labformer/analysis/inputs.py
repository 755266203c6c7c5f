"""What the analysis tools share about a rebuilt run: its family, how its inputs split into tokens (text
tokens, or image patches after the class/register tokens) and how to name them, and the error for a tool
that does not apply to it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from labformer.errors import UserError


@dataclass
class Job:
    """One tool's work: the rebuilt run (rebuild.Rebuilt), the items it reads and where it writes."""
    run: Any
    split: str
    inputs: Any
    out: Path

    def title(self, what: str) -> str:
        cfg = self.run.config
        return f"{what}\nmodel={cfg.model.name} data={cfg.data.name}\n{self.run.path.name}"


def family(run: Any) -> str:
    """The run's task family: vision, lm, contrastive, graph or timeseries."""
    return str(run.config.task.name)


def unsupported(tool: str, run: Any, why: str, fix: str) -> UserError:
    cfg = run.config
    return UserError(f"--{tool} does not apply to {run.path} (task={cfg.task.name}, model={cfg.model.name}, "
                     f"data={cfg.data.name}): {why}. {fix}")


def readable(text: str) -> str:
    return text.replace("\n", "\\n").replace("\t", "\\t").replace(" ", "\u2423")


def token_labels(datamodule: Any, ids: torch.Tensor | list[int]) -> list[str]:
    """One short label per token id: its text when the data can decode it, else the id."""
    decode = getattr(datamodule, "decode", None)
    labels = []
    for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
        try:
            text = readable(decode([int(i)])) if decode is not None else ""
        except Exception:  # a tokenizer without this id: the id says enough
            text = ""
        labels.append(text or f"#{int(i)}")
    return labels


def series_token_names(run: Any, tokens: int, per_item: int = 1) -> list[str] | None:
    """Names of a forecaster's `tokens` attention tokens where their count says what they are: its variates
    (iTransformer: one sequence per window, a token per channel) or its patches (PatchTST: a sequence per
    channel, `per_item` = channels); time steps and other layouts are numbered as they are."""
    channels, lookback = getattr(run.datamodule, "channels", None), getattr(run.datamodule, "lookback", None)
    if per_item == 1 and tokens == channels != lookback:
        return [f"var{c}" for c in range(tokens)]
    if per_item == channels and tokens == getattr(getattr(run.module, "backbone", None), "num_patches", None):
        return [f"patch{p}" for p in range(tokens)]
    return None


def is_images(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point()


def is_tokens(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.ndim == 2 and not x.is_floating_point()


def patch_layout(backbone: nn.Module, image_size: tuple[int, int], config: Any = None,
                 tokens: int | None = None) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """(leading non-patch tokens, patch grid (rows, cols), patch size (h, w) in pixels) of a vision backbone.

    timm's patch embeddings say it; otherwise a token count (`tokens`, e.g. what attention sees) is taken as
    a square grid after its leading tokens, and without either the config's model.patch_size (else a 4x4 grid).
    """
    h, w = image_size
    embed = getattr(backbone, "patch_embed", None)
    grid, patch = getattr(embed, "grid_size", None), getattr(embed, "patch_size", None)
    if grid is not None and patch is not None:
        grid, patch = tuple(int(g) for g in grid), tuple(int(p) for p in patch)
        prefix = int(getattr(backbone, "num_prefix_tokens", 0))
        if tokens is not None:
            prefix = tokens - grid[0] * grid[1]
        return prefix, grid, patch
    if tokens is not None:
        side = math.isqrt(tokens)
        while side > 0 and (h % side or w % side):
            side -= 1
        if side:
            return tokens - side * side, (side, side), (h // side, w // side)
    size = int((config or {}).get("patch_size") or max(1, h // 4))
    return 0, (max(1, h // size), max(1, w // size)), (size, size)


def patch_of_pixel(shape: tuple[int, ...], grid: tuple[int, int], patch: tuple[int, int]) -> torch.Tensor:
    """For an image of `shape` [C,H,W]: the patch index of every flattened pixel (pixels past the grid go to
    the last row/column)."""
    _, h, w = shape
    rows = (torch.arange(h) // patch[0]).clamp(max=grid[0] - 1)
    cols = (torch.arange(w) // patch[1]).clamp(max=grid[1] - 1)
    index = rows[:, None] * grid[1] + cols[None, :]
    return index.expand(shape[0], h, w).flatten()
