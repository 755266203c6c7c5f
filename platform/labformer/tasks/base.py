"""What every family's LightningModule shares: the contract builders.py assembles a run by,
optimiser and schedule, the non-finite loss guard, and the run config stored inside every
checkpoint."""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from labformer.errors import TrainingFailed, UserError
from labformer.tasks.epoch_logging import EpochLogging
from labformer.utils.checkpoint_io import CONFIG_KEY


class NonFiniteLossError(TrainingFailed):
    """The loss became NaN/inf; raised before the optimiser step so the weights stay good."""


class Task(EpochLogging):
    """A backbone from the registry plus the family's head, loss and metrics.

    A family states its contract in the class attributes and classmethods below (builders.py
    reads nothing else) and implements `step(batch, stage) -> loss`.
    """

    OPTIMIZERS = ("adamw", "adam")
    SCHEDULES: tuple[str, ...] = ("cosine", "constant")  # a family may add its own (time series: halving)

    # -- the family's contract ------------------------------------------------------------------
    MONITOR: tuple[str, str] = ("val/loss", "min")  # the metric that picks the best checkpoint, and its direction
    BACKBONE_INPUTS: dict[str, str] = {}  # backbone argument: the DataModule attribute it comes from
    HEAD_INPUTS: dict[str, str] = {}  # task argument: the DataModule attribute it comes from
    CONFIG_INPUTS: tuple[str, ...] = ()  # task arguments taken whole from other config groups (e.g. objective)
    data_keys: tuple[str, ...] = ()  # task config keys that configure the DataModule, not the module

    @classmethod
    def settings(cls, defaults: dict[str, Any]) -> dict[str, Any]:
        """`task.*` of a run without overrides, from the registered entry's defaults (the constructor's
        and the family's own `args`): monitor, mode and every setting the config may change."""
        supplied = {"backbone", "run_config", *cls.HEAD_INPUTS, *cls.CONFIG_INPUTS}
        return {"monitor": cls.MONITOR[0], "mode": cls.MONITOR[1],
                **{k: v for k, v in defaults.items() if k not in supplied}}

    @classmethod
    def data_family(cls, cfg: Any) -> str:
        """Whose dataset registry `data=<name>` is looked up in."""
        return cfg.task.name

    @classmethod
    def backbone_family(cls, cfg: Any) -> str:
        """Whose backbone registry `model=<name>` is looked up in."""
        return cfg.task.name

    @classmethod
    def wrap_datamodule(cls, datamodule: L.LightningDataModule, cfg: Any) -> L.LightningDataModule:
        return datamodule

    @classmethod
    def resolve_monitor(cls, cfg: Any, datamodule: L.LightningDataModule) -> tuple[str, str]:
        """(monitor, mode) of this run, decided before anything is written (the data may rule one out)."""
        return cfg.task.monitor, cfg.task.mode

    @classmethod
    def backbone_inputs(cls, datamodule: L.LightningDataModule) -> dict[str, Any]:
        return {arg: getattr(datamodule, attr) for arg, attr in cls.BACKBONE_INPUTS.items()}

    @classmethod
    def head_inputs(cls, datamodule: L.LightningDataModule) -> dict[str, Any]:
        return {arg: getattr(datamodule, attr) for arg, attr in cls.HEAD_INPUTS.items()}

    @classmethod
    def config_inputs(cls, cfg: Any) -> dict[str, Any]:
        return {key: OmegaConf.to_container(cfg[key], resolve=True) for key in cls.CONFIG_INPUTS}

    @classmethod
    def connect(cls, backbone: nn.Module, datamodule: L.LightningDataModule) -> None:
        """Hand the data what the built backbone asks of it (graph: its preprocessing, its size limit)."""

    def __init__(self, backbone: nn.Module, lr: float = 1e-3, weight_decay: float = 0.05,
                 warmup_epochs: int = 1, run_config: dict[str, Any] | None = None,
                 warmup_steps: int | None = None, min_lr: float = 0.0,
                 betas: tuple[float, float] | list[float] = (0.9, 0.999), optimizer: str = "adamw",
                 schedule: str = "cosine") -> None:
        """warmup_epochs: linear warm-up, then (schedule=cosine) decay to min_lr over the run;
        warmup_steps: replaces warmup_epochs (step-based recipes, e.g. nanoGPT); optimizer:
        adamw (decoupled decay, not on 1-d parameters) | adam (L2 on every parameter, the classic
        recipes); schedule: cosine (per step) | constant."""
        super().__init__()
        if optimizer not in self.OPTIMIZERS:
            raise UserError(f"task.optimizer={optimizer} is unknown; use one of {', '.join(self.OPTIMIZERS)}")
        if schedule not in self.SCHEDULES:
            raise UserError(f"task.schedule={schedule} is unknown; use one of {', '.join(self.SCHEDULES)}")
        self.optimizer_name, self.schedule = optimizer, schedule
        self.backbone = backbone
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.warmup_steps = warmup_steps
        self.min_lr = min_lr
        self.betas = tuple(betas)
        self.run_config = run_config or {}
        self.provenance: dict[str, Any] = {}  # commit, config hash, machine (results/record.py), set by the pipeline

    def step(self, batch: Any, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.step(batch, "train")
        extra = self.auxiliary_loss("train")
        loss = loss if extra is None else loss + extra
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss became {loss.item()} at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}); training stopped before the "
                "optimiser step, so the last saved checkpoint holds the last good weights. "
                "Try a lower task.lr, trainer.gradient_clip_val=1.0, or trainer.precision=32-true")
        return loss

    def expert_layers(self) -> list[nn.Module]:
        """The model's mixture-of-experts layers, found once (the module tree does not change after build)."""
        if "_expert_layers" not in self.__dict__:
            from labformer.layers.moe import moe_layers

            self.__dict__["_expert_layers"] = moe_layers(self)
        return self.__dict__["_expert_layers"]

    def configure_callbacks(self) -> list[L.Callback]:
        """Callbacks every family gets: per-epoch metrics, and the expert-load picture when the backbone
        has MoE layers."""
        from labformer.callbacks.epoch_metrics import EpochMetrics

        if not self.expert_layers():
            return [EpochMetrics()]
        from labformer.callbacks.expert_load import ExpertLoad

        return [EpochMetrics(), ExpertLoad()]

    def auxiliary_loss(self, stage: str) -> torch.Tensor | None:
        """The mixture-of-experts layers' auxiliary losses of the last forward (load balancing, router z,
        consistency), each logged as <stage>/<name> beside the share of dropped tokens; None without MoE."""
        layers = self.expert_layers()
        if not layers:
            return None
        from labformer.layers.moe import collect_aux_losses

        losses = collect_aux_losses(layers)
        for name, value in losses.items():
            self.log(f"{stage}/{name}", value, on_step=False, on_epoch=True)
        self.log(f"{stage}/moe_dropped", sum(m.dropped for m in layers) / len(layers), on_step=False, on_epoch=True)
        return sum(losses.values()) if losses else None

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.step(batch, "test")

    def make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_name == "adam":  # the classic recipes (GCN, the time-series scripts): L2 on everything
            return torch.optim.Adam(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        # AdamW: no decay on biases, norms and embedding-like 1-d parameters (standard for ViTs).
        return torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": self.weight_decay},
                                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                                 lr=self.lr, betas=self.betas)

    def configure_optimizers(self) -> Any:
        optimizer = self.make_optimizer()
        if self.schedule == "constant":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = min(total // 2, int(total * self.warmup_epochs / epochs) if self.warmup_steps is None
                     else self.warmup_steps)
        floor = self.min_lr / self.lr if self.lr else 0.0

        def factor(step: int) -> float:  # linear warm-up, then cosine to min_lr (default zero)
            if step < warmup:
                return (step + 1) / warmup
            cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
            return floor + (1 - floor) * cosine

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # eval.py rebuilds task, model and data from this alone; the provenance says which code and machine.
        checkpoint[CONFIG_KEY] = {"config": self.run_config, "provenance": self.provenance}
