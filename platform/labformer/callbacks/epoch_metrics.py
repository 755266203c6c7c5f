"""Computes the torchmetrics objects a task logged per epoch, once at each epoch's end.

Lightning would otherwise move and book-keep every logged Metric on every step (about a millisecond
per metric per step on a CPU, more than a small model's whole step); the task keeps them instead
(tasks/epoch_logging.py) and this callback hands them back as plain values: one `compute()` per epoch, so also one
distributed sync per epoch instead of Lightning's per-step handling.
"""
from __future__ import annotations

import lightning as L


class EpochMetrics(L.Callback):
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log_epoch_metrics("train")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log_epoch_metrics("validation")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log_epoch_metrics("test")
