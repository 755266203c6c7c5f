"""Samples per second over training batches only, and the parameter count, logged."""
from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import torch

log = logging.getLogger("labformer")


def _batch_size(batch: Any) -> int:
    if isinstance(batch, (list, tuple)):
        return _batch_size(batch[0])
    if isinstance(batch, dict):
        return _batch_size(next(iter(batch.values())))
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    return int(getattr(batch, "num_graphs", 1))


class ThroughputMonitor(L.Callback):
    """Logs `perf/params` once, `perf/train_samples_per_sec` each epoch, keeps the run mean."""

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self.epoch_samples = 0
        self.epoch_seconds = 0.0
        self._start = 0.0

    @property
    def samples_per_sec(self) -> float:
        return self.samples / self.seconds if self.seconds else float("nan")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = sum(p.numel() for p in pl_module.parameters())
        per_device = getattr(trainer.datamodule, "batch_size", None)
        # The batch one optimiser step sees: per device x devices x nodes x accumulation.
        global_batch = per_device * trainer.world_size * trainer.accumulate_grad_batches if per_device else None
        for logger in trainer.loggers:
            logger.log_hyperparams({"params": params, "global_batch_size": global_batch,
                                    "world_size": trainer.world_size})
        if trainer.is_global_zero and global_batch:
            log.info("global batch size %d = %d per device x %d processes x %d accumulation", global_batch,
                     per_device, trainer.world_size, trainer.accumulate_grad_batches)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_samples, self.epoch_seconds = 0, 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        # Scaled by the world size: every rank processes its own share of the global batch.
        n = _batch_size(batch) * trainer.world_size
        dt = time.perf_counter() - self._start
        if not self.samples and trainer.is_global_zero:  # start-up is over (benchmarks/compare/startup.py reads this)
            log.info("first training step done")
        self.epoch_samples += n
        self.epoch_seconds += dt
        self.samples += n
        self.seconds += dt

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epoch_seconds:
            pl_module.log("perf/train_samples_per_sec", self.epoch_samples / self.epoch_seconds,
                          on_epoch=True, on_step=False, rank_zero_only=True)
