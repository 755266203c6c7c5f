"""Progress for people watching a terminal, and for log files, without costing steps.

Lightning's tqdm bar redraws after every batch: on a small model that costs more than the step itself
(and under W&B every redraw is also captured as console output and sent to its service). Here:
- on a terminal, tqdm bars that redraw at most `refresh_per_second` times a second;
- when stderr is not a terminal (a log file, SLURM, CI), no bars at all (their carriage returns fill
  files with thousands of redraws): one line every `every_seconds` while an epoch runs, beside the
  per-epoch summary line (callbacks/epoch_summary.py).
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

log = logging.getLogger("labformer")


class ThrottledTQDM(TQDMProgressBar):
    def __init__(self, refresh_per_second: float = 4.0) -> None:
        super().__init__(refresh_rate=1)
        self.min_interval = 1.0 / refresh_per_second
        self._last_draw = 0.0

    def _should_update(self, current: int, total: int) -> bool:
        if not self.is_enabled:
            return False
        now = time.monotonic()
        if current == total or now - self._last_draw >= self.min_interval:
            self._last_draw = now
            return True
        return False


class LineProgress(ProgressBar):
    """A line `epoch E  batch i/N  x it/s  <metrics>` every `every_seconds` seconds of training."""

    def __init__(self, every_seconds: float = 30.0) -> None:
        super().__init__()
        self.every_seconds = every_seconds
        self._enabled = True
        self._epoch_start = self._last_line = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = self._last_line = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.monotonic()
        if not self._enabled or now - self._last_line < self.every_seconds:
            return
        self._last_line = now
        done, total = batch_idx + 1, self.total_train_batches
        shown = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        values = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
        of = f"/{total}" if isinstance(total, int) else ""
        log.info("epoch %d  batch %d%s  %.2f it/s  %s", trainer.current_epoch, done, of,
                 done / max(now - self._epoch_start, 1e-9), values)


def progress_bar(kind: str) -> ProgressBar | None:
    """`callbacks.progress_bar`: tqdm (bars on a terminal, periodic lines otherwise) | rich | none."""
    if kind == "none":
        return None
    if not sys.stderr.isatty():
        return LineProgress()
    if kind == "rich":
        from lightning.pytorch.callbacks import RichProgressBar

        return RichProgressBar()
    return ThrottledTQDM()
