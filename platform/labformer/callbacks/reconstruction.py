"""What a masked-reconstruction objective (CropMAE) rebuilds, as a picture after each validation.

Rows are the first validation items; columns: view 2 | its masked input (hidden patches blue) |
the reconstruction (visible patches pasted back). The validation views are seeded and the mask comes from a
fixed generator, so successive pictures differ only by what the model learned. Saved as
`reconstruction_val.png` in the run directory (replaced each epoch) and logged to W&B
when it is the logger. Training runs only (eval.py writes nothing into a run directory).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

FILENAME = "reconstruction_val.png"


def save_reconstructions(view: torch.Tensor, hidden: torch.Tensor, rebuilt: torch.Tensor, path: Path,
                         title: str) -> Path:
    """One row per item: view [B,C,H,W] | the view with its hidden pixels (bool [B,1,H,W]) painted blue |
    rebuilt [B,C,H,W]; each row on its view's range."""
    from labformer.utils.forecast_plot import pyplot

    plt = pyplot()
    rows = len(view)
    fig, axes = plt.subplots(rows, 3, figsize=(4.8, 1.6 * rows + 0.4), squeeze=False)
    for i in range(rows):
        low, high = view[i].min(), view[i].max()

        def rgb(x: torch.Tensor) -> torch.Tensor:  # [H,W,3] in [0,1]
            x = ((x - low) / (high - low).clamp(min=1e-6)).clamp(0, 1)
            return x.expand(3, -1, -1).permute(1, 2, 0) if x.shape[0] == 1 else x[:3].permute(1, 2, 0)

        blue = torch.tensor([0.25, 0.45, 0.85])
        masked_input = torch.where(hidden[i, 0, ..., None], blue, rgb(view[i]))
        for j, (image, name) in enumerate(((rgb(view[i]), "view 2"), (masked_input, "masked input"),
                                           (rgb(rebuilt[i]), "reconstruction"))):
            ax = axes[i, j]
            ax.imshow(image.cpu().numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class ReconstructionPicture(L.Callback):
    def __init__(self, items: int = 8, seed: int = 0) -> None:
        self.items, self.seed = items, seed
        self.views: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx == 0 and isinstance(batch, dict) and "views" in batch:
            self.views = tuple(v[:self.items].detach() for v in batch["views"])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.sanity_checking or self.views is None or trainer.checkpoint_callback is None
                or not trainer.is_global_zero):
            return
        generator = torch.Generator().manual_seed(self.seed)  # the same mask every epoch
        view, hidden, rebuilt = pl_module.objective.pictures(pl_module.encoder, *self.views, generator=generator)
        path = Path(trainer.default_root_dir) / FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        save_reconstructions(view.float().cpu(), hidden.cpu(), rebuilt.float().cpu(), path,
                             f"epoch {trainer.current_epoch}, step {trainer.global_step}")
        self.views = None
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="val/reconstruction", images=[str(path)])
