"""Figures of the runs (matplotlib, Agg: no display needed): forecast vs truth of a few test windows."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the Agg backend (headless: clusters and CI have no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_forecasts(lookbacks: np.ndarray, truths: np.ndarray, forecasts: np.ndarray, path: str | Path,
                   channel: int = -1, title: str = "") -> Path:
    """One panel per window: lookback and truth of `channel`, with the forecast over the horizon.

    lookbacks [N,L,C], truths and forecasts [N,H,C], all in the scaled units the metrics use.
    """
    plt = pyplot()
    n = len(lookbacks)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.2 * n), squeeze=False)
    for ax, x, y, f in zip(axes[:, 0], lookbacks, truths, forecasts):
        past = np.arange(-len(x), 0)
        future = np.arange(len(y))
        ax.plot(past, x[:, channel], color="0.4", lw=1, label="lookback")
        ax.plot(future, y[:, channel], color="C0", lw=1.2, label="truth")
        ax.plot(future, f[:, channel], color="C3", lw=1.2, label="forecast")
        ax.axvline(-0.5, color="0.7", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=8, ncol=3)
    axes[-1, 0].set_xlabel("time step (0 = first forecast step)")
    if title:
        axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
