"""What an analysis leaves behind: a picture, the numbers behind it (.npz arrays, a .json summary), and
optionally the picture in the run's W&B history; and the drawing helpers the tools share."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labformer.utils.forecast_plot import pyplot

PNG, NPZ = "attention_maps.png", "attention_maps.npz"
# keep_wandb_in points these into the run directory; an analysis puts them back afterwards.
WANDB_VARS = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR")


def write_arrays(layers: list[tuple[str, torch.Tensor]], out: Path) -> Path:
    """`layer<i>`: float32 [items, heads, queries, keys], i in the order the forward pass ran them."""
    path = out / NPZ
    np.savez_compressed(path, **{f"layer{i}": probs.numpy().astype(np.float32) for i, (_, probs) in enumerate(layers)})
    return path


def plot_maps(layers: list[tuple[str, torch.Tensor]], out: Path, title: str, labels: list[str] | None = None) -> Path:
    """Rows = layers, columns = heads: the first item's query x key probabilities, each on its own scale;
    `labels` name the tokens on the axes (up to 32 of them, else the positions are numbered)."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    rows, cols = len(layers), max(p.shape[1] for _, p in layers)
    side = 1.9 if rows * cols <= 64 else 1.3  # big grids stay a readable file
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols + 0.6, side * rows + 0.8), squeeze=False)
    for i, (_, probs) in enumerate(layers):
        for h in range(cols):
            ax = axes[i, h]
            if h >= probs.shape[1]:  # a layer with fewer heads than the widest one
                ax.axis("off")
                continue
            ax.imshow(probs[0, h].numpy(), cmap="viridis", vmin=0.0, interpolation="nearest")
            ax.set_title(f"layer {i} head {h}", fontsize=8)
            ax.tick_params(labelsize=6)
            if labels and len(labels) == probs.shape[-1] <= 32:
                ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=5)
                ax.set_yticks(range(len(labels)), labels, fontsize=5)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # token positions, not fractions
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            if i == rows - 1:
                ax.set_xlabel("key", fontsize=7)
            if h == 0:
                ax.set_ylabel("query", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = out / PNG
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_figure(fig: Any, path: Path, title: str | None = None) -> Path:
    """`fig` as a PNG at `path` (closed afterwards, so many analyses keep no figures open)."""
    plt = pyplot()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_numbers(out: Path, stem: str, arrays: dict[str, Any], summary: dict[str, Any]) -> list[Path]:
    """`<stem>.npz` (the arrays, floats as float32) and `<stem>.json` (a readable summary)."""
    def as_array(value: Any) -> np.ndarray:
        value = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        return value.astype(np.float32) if value.dtype.kind == "f" else value

    npz, js = out / f"{stem}.npz", out / f"{stem}.json"
    np.savez_compressed(npz, **{k: as_array(v) for k, v in arrays.items()})
    js.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return [npz, js]


def display_image(image: torch.Tensor) -> np.ndarray:
    """A normalised image [C,H,W] as [H,W] (one channel) or [H,W,3] in [0, 1], for imshow."""
    x = image.detach().float().cpu()
    x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-8)
    return x[0].numpy() if x.shape[0] == 1 else x[:3].permute(1, 2, 0).numpy()


def log_to_wandb(png: Path | list[Path], config: Any, run_dir: Path) -> str | None:
    """The pictures in the run's W&B history as `analysis/<file stem>` (offline, into the run directory,
    `wandb sync` uploads them).

    Only for runs that used the W&B logger; any failure (no wandb, a broken install) skips it: the
    files on disk are the analysis, the W&B copy a convenience.
    """
    logger = config.get("logger") or {}
    if logger.get("name") != "wandb":
        return None
    saved = {k: os.environ.get(k) for k in WANDB_VARS}
    try:
        import wandb

        from labformer.utils.loggers import keep_wandb_in

        keep_wandb_in(run_dir)  # as the run did: nothing lands in the home directory
        run = wandb.init(project=logger.get("project") or "labformer", entity=logger.get("entity"),
                         id=config.get("run_id"), name=config.get("run_id"), dir=str(run_dir), mode="offline",
                         resume="allow", group=logger.get("group"), job_type="analysis",
                         settings=wandb.Settings(silent=True))
        pngs = [png] if isinstance(png, Path) else list(png)
        keys = [f"analysis/{p.stem}" for p in pngs]
        try:
            run.log({k: wandb.Image(str(p)) for k, p in zip(keys, pngs)})
            where = Path(run.dir).parent  # .../wandb/offline-run-<time>-<id>/files -> the run folder
        finally:
            run.finish()
        return f"W&B: {', '.join(keys)} logged offline in {where}; upload with: wandb sync {where}"
    except Exception:
        return None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
