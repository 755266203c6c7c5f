"""`self.log` from a task's steps without Lightning's per-call bookkeeping on every step.

Each `self.log` call costs Lightning about half a millisecond on a CPU (moving and re-checking its
result object; several times that for a torchmetrics object), more than a small model's whole step.
A task logs from its steps as usual; here, instead:
- per-epoch values (`on_epoch=True`: losses, tensors, numbers) are summed locally, weighted by
  `batch_size`, and their mean is logged once at the epoch's end (summed over processes first when
  `sync_dist=True`, so the mean weighs every item alike, as Lightning's would);
- torchmetrics objects logged per epoch are computed once at the epoch's end (one sync);
- per-step values (`on_step=True`, training) go to Lightning only on the steps its loggers write
  (`trainer.log_every_n_steps`), as `<name>_step` when the epoch mean is logged too.
Training metrics: `update_metric` keeps a training step's (preds, target) and applies up to
`METRIC_BUFFER_STEPS` steps in one `update` (a torchmetrics update costs ~40-80 us per call on a
CPU whatever the batch; its states are sums, so the epoch's value is the same); everything kept is
applied before the epoch's value is computed. Validation and test metrics are updated at once.
callbacks/epoch_metrics.py calls `log_epoch_metrics` at each epoch's end. Logs from other hooks, and
logs with settings this does not cover (a custom reduce_fx, positional arguments), go to Lightning.
"""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torchmetrics import Metric

from labformer.utils import lightning_logging

lightning_logging.install()

# The step hooks whose logs are kept here, and the stage (epoch-end hook) each belongs to.
STEP_STAGES = {"training_step": "train", "validation_step": "validation", "test_step": "test"}


class EpochLogging(L.LightningModule):
    METRIC_BUFFER_STEPS = 32  # training steps applied in one metric update (1: each step at once)
    METRIC_BUFFER_ELEMENTS = 1 << 22  # or sooner, when about this many numbers are kept (steps x this one's)

    def __init__(self) -> None:
        super().__init__()
        # stage -> name -> [metric or (weighted sum, weight), the log call's settings]
        self._kept: dict[str, dict[str, list[Any]]] = {}
        self._pending: dict[int, tuple[Any, list[torch.Tensor], list[torch.Tensor]]] = {}  # training metric updates

    def update_metric(self, metric: Any, preds: torch.Tensor, target: torch.Tensor, stage: str) -> None:
        """`metric.update(preds, target)` (a Metric or MetricCollection); in training, kept and applied in
        chunks (module docstring)."""
        if stage != "train" or self.METRIC_BUFFER_STEPS <= 1:
            metric.update(preds, target)
            return
        held = self._pending.setdefault(id(metric), (metric, [], []))
        held[1].append(preds.detach())
        held[2].append(target.detach())
        kept = len(held[1])
        if kept >= self.METRIC_BUFFER_STEPS or kept * preds.numel() >= self.METRIC_BUFFER_ELEMENTS:
            self.apply_pending()

    def apply_pending(self) -> None:
        """Apply every kept training update (one update per metric)."""
        for metric, preds, target in self._pending.values():
            if preds:
                metric.update(torch.cat(preds), torch.cat(target))
        self._pending.clear()

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        stage = STEP_STAGES.get(self._current_fx_name or "")
        if stage is None or args or kwargs.get("reduce_fx", "mean") not in ("mean", torch.mean):
            return super().log(name, value, *args, **kwargs)
        on_step = kwargs.get("on_step", stage == "train")
        on_epoch = kwargs.get("on_epoch", stage != "train")
        if isinstance(value, Metric):
            if on_step:
                return super().log(name, value, *args, **kwargs)
            self._kept.setdefault(stage, {})[name] = [value, kwargs]
            return None
        if on_epoch:
            self._add(stage, name, value, kwargs)
        if on_step and self._logs_this_step():
            step_kwargs = {k: v for k, v in kwargs.items() if k not in ("on_step", "on_epoch", "sync_dist")}
            super().log(f"{name}_step" if on_epoch else name, value, on_step=True, on_epoch=False, **step_kwargs)
        return None

    def _add(self, stage: str, name: str, value: Any, kwargs: dict[str, Any]) -> None:
        weight = float(kwargs.get("batch_size") or 1)
        value = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        kept = self._kept.setdefault(stage, {})
        if name in kept:
            kept[name][0] = (kept[name][0][0] + value * weight, kept[name][0][1] + weight)
        else:
            kept[name] = [(value * weight, weight), kwargs]

    def _logs_this_step(self) -> bool:
        trainer = self._trainer
        if trainer is None:
            return True
        return bool(trainer.fast_dev_run) or trainer._logger_connector.should_update_logs

    def log_epoch_metrics(self, stage: str) -> None:
        """Log the epoch's value of everything kept for `stage`, then forget it (metrics are reset)."""
        if stage == "train":
            self.apply_pending()
        kept = self._kept.pop(stage, {})
        metrics = {}
        for name, (held, kwargs) in kept.items():
            settings = {k: v for k, v in kwargs.items() if k not in ("on_step", "on_epoch", "sync_dist", "batch_size")}
            if isinstance(held, Metric):
                metrics[id(held)] = held
                if held.update_called:  # compute() gathers over all processes itself
                    super().log(name, held.compute(), on_step=False, on_epoch=True, sync_dist=False, **settings)
                continue
            total, weight = held[0].to(self.device), torch.tensor(held[1], device=self.device)
            if kwargs.get("sync_dist") and self._trainer is not None and self.trainer.world_size > 1:
                total = self.trainer.strategy.reduce(total, reduce_op="sum")
                weight = self.trainer.strategy.reduce(weight, reduce_op="sum")
            on_step = kwargs.get("on_step", stage == "train")
            super().log(name if not on_step else f"{name}_epoch", total / weight, on_step=False, on_epoch=True,
                        sync_dist=False, **settings)
        for metric in metrics.values():  # one metric may be logged under two names
            metric.reset()
