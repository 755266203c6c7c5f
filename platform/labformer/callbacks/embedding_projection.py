"""A picture of the learned embedding: the test items' features projected on their first two
principal components, coloured by class; saved as `embeddings_test.png` in the run
directory and logged to W&B when it is the logger. Training runs only (eval.py writes nothing
into a run directory)."""
from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch

log = logging.getLogger("labformer")


def principal_components(features: torch.Tensor, k: int = 2) -> torch.Tensor:
    """[N, k] coordinates of the centred features on their top-k principal axes."""
    centred = features.float() - features.float().mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:k].T


def save_projection(features: torch.Tensor, labels: torch.Tensor, path: Path, title: str, max_points: int = 5000) -> Path:
    from labformer.utils.forecast_plot import pyplot

    plt = pyplot()
    if len(features) > max_points:  # a fixed subsample: the same picture for the same features
        keep = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))[:max_points]
        features, labels = features[keep], labels[keep]
    xy = principal_components(features).numpy()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    labelled = labels >= 0
    ax.scatter(xy[~labelled.numpy(), 0], xy[~labelled.numpy(), 1], s=3, c="grey", alpha=0.5)
    classes = int(labels.max()) + 1 if labelled.any() else 0
    ax.scatter(xy[labelled.numpy(), 0], xy[labelled.numpy(), 1], s=3, c=labels[labelled].numpy(),
               cmap="tab10" if classes <= 10 else "tab20", alpha=0.7)
    ax.set(title=title, xlabel="PC 1", ylabel="PC 2")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


class EmbeddingProjection(L.Callback):
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        features = getattr(pl_module, "test_features", None)
        if features is None or trainer.checkpoint_callback is None or not trainer.is_global_zero:
            return
        feats, labels = features
        if len(feats) < 3:
            return
        path = Path(trainer.default_root_dir) / "embeddings_test.png"
        save_projection(feats, labels, path, f"test embeddings ({len(feats)} items), PCA")
        log.info("embedding picture: %s", path)
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="test/embeddings", images=[str(path)])
