"""last.ckpt: the checkpoint a run resumes from, written at most every `min_seconds`.

A second ModelCheckpoint beside the best-k one: with `save_last=True` Lightning rewrites last.ckpt
only in epochs where the monitored metric improved, and a resume would go back to the best epoch.
Writing it after every epoch costs a full save and an fsync per epoch, which dominates runs of
many one-step epochs (full-batch graphs: Cora's 200 epochs take seconds), so it is written after the
first epoch, then when `min_seconds` have passed since the last write, and always after the last
epoch (max_epochs or max_steps reached, or a callback stopped the run). A crash loses at most
`min_seconds` of training; SLURM preemption saves separately (callbacks/slurm_requeue.py).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    def __init__(self, dirpath: Path, every_n_epochs: int = 1, min_seconds: float = 60.0) -> None:
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, every_n_epochs=every_n_epochs,
                         enable_version_counter=False)
        self.min_seconds = min_seconds
        self._written_at = -math.inf

    @staticmethod
    def final_epoch(trainer: L.Trainer) -> bool:
        """Whether the fit loop stops after this epoch."""
        epochs_done = trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
        steps_done = trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps
        return bool(epochs_done or steps_done or trainer.should_stop)

    def due(self, trainer: L.Trainer) -> bool:
        return time.monotonic() - self._written_at >= self.min_seconds or self.final_epoch(trainer)

    # Lightning gathers the monitor candidates (a deep copy of every logged metric) before it asks
    # whether to save: not due, neither is needed.
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.due(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.due(trainer):
            super().on_validation_end(trainer, pl_module)

    # Lightning calls this for a ModelCheckpoint without a monitor (every `every_n_epochs` epochs), from the
    # two hooks above: only when due.
    def _save_none_monitor_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        super()._save_none_monitor_checkpoint(trainer, monitor_candidates)
        self._written_at = time.monotonic()
