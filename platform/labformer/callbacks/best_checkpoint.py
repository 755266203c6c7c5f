"""best-*.ckpt: the best weights by task.monitor, written at most every `min_seconds` while they keep improving.

Full-batch graph runs (Cora: 200 one-step epochs of about 65 ms) improve their monitor almost every
epoch, and each improvement cost a checkpoint on the training thread (building it and serialising it:
about 1.5 ms, a few percent of such an epoch). Here an improvement that comes within `min_seconds`
of the previous write is held in memory instead (a copy of the weights; weights-only best checkpoints,
one kept, one process, models up to `max_held_bytes`) and written when the next write is due, before
any full checkpoint that records this callback's state (last.ckpt and a SLURM requeue save name the
best file, so it must exist when they do), at the end of training and on an exception. The file a held
checkpoint supersedes is removed only after the held one is written: whenever a run is killed, the best
file its last.ckpt names is on disk.
"""
from __future__ import annotations

import math
import time
from typing import Any
from weakref import proxy

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from labformer.callbacks.last_checkpoint import LastCheckpoint


class BestCheckpoint(ModelCheckpoint):
    def __init__(self, *args: Any, min_seconds: float = 10.0, max_held_bytes: int = 64 * 2**20, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.min_seconds, self.max_held_bytes = min_seconds, max_held_bytes
        self._written_at = -math.inf
        self._held: dict[str, Any] | None = None  # path, epoch, global_step and a copy of the weights
        self._removals: list[str] = []  # superseded files, removed once the held checkpoint is written
        self._trainer: L.Trainer | None = None
        self._small: bool | None = None  # whether the weights fit max_held_bytes (measured once)

    def _may_hold(self, trainer: L.Trainer) -> bool:
        if not (self.save_weights_only and self.save_top_k == 1 and trainer.world_size == 1 and self.min_seconds > 0):
            return False
        if self._due() or LastCheckpoint.final_epoch(trainer):
            return False
        if self._small is None:
            state = trainer.lightning_module.state_dict().values()
            self._small = sum(t.numel() * t.element_size() for t in state) <= self.max_held_bytes
        return self._small

    def _monitor_candidates(self, trainer: L.Trainer) -> dict[str, Any]:
        # Lightning deep-copies every logged metric here each epoch; they are tensors the epoch's end
        # computed afresh and nothing changes in place, so a copy of each tensor is enough (and cheaper).
        candidates = {k: v.detach().clone() if isinstance(v, torch.Tensor) else v
                      for k, v in trainer.callback_metrics.items()}
        epoch, step = candidates.get("epoch"), candidates.get("step")
        candidates["epoch"] = epoch.int() if isinstance(epoch, torch.Tensor) else torch.tensor(trainer.current_epoch)
        candidates["step"] = step.int() if isinstance(step, torch.Tensor) else torch.tensor(trainer.global_step)
        return candidates

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if not self._may_hold(trainer):
            self._held = None  # superseded by this write (its file was never written)
            super()._save_checkpoint(trainer, filepath)
            self._wrote(trainer)
            return
        weights = {k: v.detach().clone() for k, v in trainer.lightning_module.state_dict().items()}
        self._held = {"path": filepath, "epoch": trainer.current_epoch, "global_step": trainer.global_step,
                      "state_dict": weights}
        self._trainer = trainer
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if self._held is not None:
            self._removals.append(filepath)  # still the best file on disk until the held one is written
        else:
            super()._remove_checkpoint(trainer, filepath)

    def _wrote(self, trainer: L.Trainer) -> None:
        self._written_at = time.monotonic()
        removals, self._removals = self._removals, []
        for path in removals:
            if path != self.best_model_path:
                super()._remove_checkpoint(trainer, path)

    def write_held(self) -> None:
        """Write the held best checkpoint now (as it was when it was the best), if there is one."""
        held, trainer = self._held, self._trainer
        if held is None or trainer is None:
            return
        self._held = None
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=True)
        checkpoint.update(epoch=held["epoch"], global_step=held["global_step"], state_dict=held["state_dict"])
        trainer.strategy.save_checkpoint(checkpoint, held["path"])
        self._wrote(trainer)
        for logger in trainer.loggers:
            logger.after_save_checkpoint(proxy(self))

    def _due(self) -> bool:
        return time.monotonic() - self._written_at >= self.min_seconds

    def _write_held_if_due(self) -> None:
        if self._held is not None and self._due():
            self.write_held()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._write_held_if_due()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._write_held_if_due()

    def state_dict(self) -> dict[str, Any]:
        self.write_held()  # a checkpoint that records best_model_path is being written: the file must exist
        return super().state_dict()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write_held()
        super().on_train_end(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.write_held()
        super().on_exception(trainer, pl_module, exception)
