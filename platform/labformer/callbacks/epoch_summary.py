"""One console line per epoch with the epoch's metrics: progress bars vanish, this stays."""
from __future__ import annotations

import logging

import lightning as L

log = logging.getLogger("labformer")


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {float(v):.4f}" for k, v in sorted(metrics.items()))


class EpochSummary(L.Callback):
    # After validation has ended: by then Lightning has reduced the epoch's values into callback_metrics.
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        shown = {k: v for k, v in trainer.callback_metrics.items()
                 if k.startswith(("train/", "val/")) and not k.endswith("_step")}
        log.info("epoch %d  %s", trainer.current_epoch, format_metrics(shown))
