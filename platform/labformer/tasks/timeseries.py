"""Multivariate forecasting: any time-series backbone `x[B,L,C] -> forecast[B,H,C]`, MSE/MAE.

Metrics are on the scaled data (the published tables' convention), overall and per horizon
step. The test metrics' names say which windows they cover: `test/mse` every window,
`test/mse_drop_last` the published tables' loader (last incomplete batch dropped).
`sam_rho > 0` trains with sharpness-aware minimisation (Lightning manual optimisation:
ascent to w + eps, gradient there, descent from w), for every backbone.

Classification (the data decide, `datamodule.objective == "classification"`, as in lm.py): the
backbone is built with horizon = the data's `feature_len`, its output [B,H,C] is flattened to one
vector per series and a linear head gives logits; cross-entropy, accuracy, monitor val/acc (max).
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from labformer.errors import UserError
from labformer.models.timeseries import base as contract
from labformer.optim.sam import sam_step
from labformer.registry import register
from labformer.tasks.base import NonFiniteLossError, Task

log = logging.getLogger("labformer")


@register("timeseries", task="timeseries", kind="task", args=dict(weight_decay=0.01, warmup_epochs=0))
class TimeSeriesTask(Task):
    SCHEDULES = ("cosine", "halving", "constant")  # halving: lr / 2 after each epoch, as the published scripts
    MONITOR = ("val/mse", "min")
    BACKBONE_INPUTS = contract.INPUTS
    HEAD_INPUTS = {"horizon": "horizon", "channels": "channels", "test_drop_last": "test_drop_last",
                   "objective": "objective", "num_classes": "num_classes"}
    FORECAST_MONITORS = ("val/mse", "val/mae")

    @classmethod
    def head_inputs(cls, datamodule: Any) -> dict[str, Any]:
        # Forecasting DataModules declare no objective: they keep their exact arguments.
        inputs = {arg: getattr(datamodule, attr) for arg, attr in cls.HEAD_INPUTS.items()
                  if arg not in ("objective", "num_classes")}
        if getattr(datamodule, "objective", "forecast") == "classification":
            inputs.update(objective="classification", num_classes=datamodule.num_classes)
        return inputs

    @classmethod
    def resolve_monitor(cls, cfg: Any, datamodule: Any) -> tuple[str, str]:
        if getattr(datamodule, "objective", "forecast") != "classification":
            return super().resolve_monitor(cfg, datamodule)
        if cfg.task.monitor == cls.MONITOR[0]:  # the forecasting default: what classification data report
            log.info("%s is classification data: val/acc picks the best checkpoint", cfg.data.name)
            return "val/acc", "max"
        if cfg.task.monitor in cls.FORECAST_MONITORS:
            raise UserError(f"task.monitor={cfg.task.monitor} is a forecasting metric, but data={cfg.data.name} is "
                            "classification data. Fix: task.monitor=val/acc task.mode=max (or val/loss, min).")
        return super().resolve_monitor(cfg, datamodule)

    def __init__(self, backbone: nn.Module, horizon: int, channels: int, loss: Literal["mse", "mae"] = "mse",
                 sam_rho: float = 0.0, sam_adaptive: bool = False, test_drop_last: bool = False,
                 plot_windows: int = 4, objective: str = "forecast", num_classes: int | None = None,
                 **base: Any) -> None:
        """loss: the training loss (both are reported); sam_rho > 0: sharpness-aware minimisation with
        this radius (two passes per step), any model; sam_adaptive: ASAM, the radius relative to each
        weight's size; plot_windows: test windows drawn in forecast_test.png (0: no plot)."""
        super().__init__(backbone, **base)
        self.horizon, self.channels = horizon, channels
        self.loss_name = loss
        self.sam_rho, self.sam_adaptive = sam_rho, sam_adaptive
        self.automatic_optimization = sam_rho <= 0  # SAM needs two passes per step: manual
        self.test_suffix = "_drop_last" if test_drop_last else ""
        self.plot_windows = plot_windows
        self.objective = objective
        if objective == "classification":
            if not num_classes or num_classes < 2:
                raise UserError(f"the classification mode needs data with num_classes >= 2 (got {num_classes})")
            # Flattened [H,C] map -> logits: every backbone's output, channel identity kept.
            self.head = nn.Linear(horizon * channels, num_classes)
            self.acc = nn.ModuleDict({f"{s}_acc": MulticlassAccuracy(num_classes, average="micro")
                                      for s in ("train", "val", "test")})  # micro: the UCR tables' accuracy
            self._examples, self._test_windows = [], 0  # no forecast plot or per-step curve
            return
        if objective != "forecast":
            raise UserError(f"unknown time-series objective '{objective}'; the data must declare forecast or "
                            "classification")
        overall = MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()})
        self.metrics = nn.ModuleDict({f"{s}_metrics": overall.clone(prefix=f"{s}/") for s in ("train", "val")})
        self.metrics["test_metrics"] = overall.clone(prefix="test/", postfix=self.test_suffix)
        # Per horizon step: one output per step, over all windows and channels.
        self.per_step = MetricCollection({"mse": MeanSquaredError(num_outputs=horizon),
                                          "mae": MeanAbsoluteError(num_outputs=horizon)})
        self._examples: list[tuple[torch.Tensor, ...]] = []
        self._test_windows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.objective == "classification":
            return self.head(self.backbone(x).flatten(1))
        return self.backbone(x)

    def criterion(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.objective == "classification":
            return F.cross_entropy(forecast, target)
        return F.mse_loss(forecast, target) if self.loss_name == "mse" else F.l1_loss(forecast, target)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        if self.objective == "classification":
            return self.classify(x, y, stage)
        forecast = self(x)
        loss = self.criterion(forecast, y)
        n = x.shape[0]
        metrics = self.metrics[f"{stage}_metrics"]
        self.update_metric(metrics, forecast.detach().flatten(), y.flatten(), stage)
        suffix = self.test_suffix if stage == "test" else ""
        self.log(f"{stage}/loss{suffix}", loss, prog_bar=stage != "test", on_step=stage == "train", on_epoch=True,
                 batch_size=n, sync_dist=stage != "train")
        self.log_dict(metrics, prog_bar=stage == "val", on_step=False, on_epoch=True, batch_size=n)
        if stage == "test":
            # [B,H,C] -> [B*C, H]: one row per (window, channel), one column per horizon step
            self.per_step.update(forecast.detach().transpose(1, 2).reshape(-1, self.horizon),
                                 y.transpose(1, 2).reshape(-1, self.horizon))
            self._test_windows += n
            self._examples.append((x[0].cpu(), y[0].cpu(), forecast[0].detach().cpu()))
        return loss

    def classify(self, x: torch.Tensor, y: torch.Tensor, stage: str) -> torch.Tensor:
        logits = self(x)
        loss = self.criterion(logits, y)
        acc = self.acc[f"{stage}_acc"]  # keys get a suffix: "train" is an nn.Module method name
        self.update_metric(acc, logits.detach(), y, stage)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", on_step=stage == "train", on_epoch=True,
                 batch_size=len(y), sync_dist=stage != "train")
        self.log(f"{stage}/acc", acc, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    # -- SAM: manual optimisation --------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if self.automatic_optimization:
            return super().training_step(batch, batch_idx)
        x, y = batch
        first = True

        def closure() -> torch.Tensor:
            nonlocal first
            loss = self.step(batch, "train") if first else self.criterion(self(x), y)  # log the loss at w only
            first = False
            self.manual_backward(loss)
            return loss

        def check(loss: torch.Tensor) -> None:
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"the training loss became {loss.item()} at global step {self.global_step} (epoch "
                    f"{self.current_epoch}, batch {batch_idx}); training stopped before the optimiser step. "
                    "Try a lower task.lr or task.sam_rho")

        params = [p for p in self.parameters() if p.requires_grad]
        loss = sam_step(params, closure, self.optimizers(), self.sam_rho, self.sam_adaptive, check)
        scheduler = self.lr_schedulers()
        if scheduler is not None and self.schedule == "cosine":  # per-step schedule
            scheduler.step()
        return loss.detach()

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers() if not self.automatic_optimization else None
        if scheduler is not None and self.schedule == "halving":
            scheduler.step()

    def configure_optimizers(self) -> Any:
        if self.schedule != "halving":
            return super().configure_optimizers()  # the platform's optimiser, warm-up + cosine or constant
        # The Time-Series-Library's `type1`: lr / 2 after every epoch.
        optimizer = self.make_optimizer()
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5 ** epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    # -- test outputs: per-step metrics, protocol, plot ------------------------------------------
    def on_test_epoch_start(self) -> None:
        if self.objective == "classification":
            return
        self.per_step.reset()
        self._examples, self._test_windows = [], 0
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "protocol"):
            log.info("test protocol: %s (metric names %s)", datamodule.protocol,
                     "test/*_drop_last" if self.test_suffix else "test/*")

    def on_test_epoch_end(self) -> None:
        if not self._examples:
            return
        per_step = {k: v.cpu().numpy() for k, v in self.per_step.compute().items()}
        s = self.test_suffix
        for h in sorted({1, self.horizon}):  # the two ends of the curve as scalars; the curve as a file
            self.log(f"test/mse{s}_h{h}", float(per_step["mse"][h - 1]))
            self.log(f"test/mae{s}_h{h}", float(per_step["mae"][h - 1]))
        self.log(f"test/windows{s}", float(self._test_windows))
        run_dir = self._run_dir()
        if run_dir is None or not self.trainer.is_global_zero:
            return
        with open(run_dir / f"test_horizon_metrics{s}.csv", "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["step", "mse", "mae"])
            out.writerows([h + 1, f"{m:.6f}", f"{a:.6f}"] for h, (m, a) in enumerate(zip(per_step["mse"],
                                                                                          per_step["mae"])))
        if self.plot_windows > 0:
            self._plot(run_dir / f"forecast_test{s}.png")

    def _run_dir(self) -> Path | None:
        """The training run's directory, or None (eval.py: leave the training run's files alone)."""
        wanted = (self.run_config.get("paths") or {}).get("run_dir")
        here = Path(self.trainer.default_root_dir).resolve()
        return here if wanted and Path(wanted).resolve() == here else None

    def _plot(self, path: Path) -> None:
        from lightning.pytorch.loggers import WandbLogger

        from labformer.utils.forecast_plot import plot_forecasts

        pick = np.unique(np.linspace(0, len(self._examples) - 1, self.plot_windows).round().astype(int))
        x, y, f = (torch.stack([self._examples[i][k] for i in pick]).float().numpy() for k in range(3))
        protocol = "drop_last" if self.test_suffix else "all windows"
        plot_forecasts(x, y, f, path, title=f"test forecasts, last channel ({protocol}; scaled units)")
        for lg in self.trainer.loggers:
            if isinstance(lg, WandbLogger):
                lg.log_image(key=f"test/forecast{self.test_suffix}", images=[str(path)])
        log.info("forecast plot: %s", path)
