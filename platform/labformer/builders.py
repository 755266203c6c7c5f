"""Turn a composed config into the objects of a run: data, task, callbacks, trainer."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from labformer import registry
from labformer.callbacks.best_checkpoint import BestCheckpoint
from labformer.callbacks.epoch_summary import EpochSummary
from labformer.callbacks.last_checkpoint import LastCheckpoint
from labformer.callbacks.progress import progress_bar
from labformer.callbacks.rng_state import RNGStateCallback
from labformer.callbacks.slurm_requeue import SlurmRequeue
from labformer.callbacks.throughput import ThroughputMonitor
from labformer.callbacks.validation_memory import ValidationMemory
from labformer.errors import UserError
from labformer.utils.arguments import check_arguments
from labformer.utils.checkpoint_io import AtomicCheckpointIO

log = logging.getLogger("labformer")


def config_dict(cfg: DictConfig, run_id: str | None = None) -> dict[str, Any]:
    """A plain resolved dict (what runs, checkpoints and W&B store)."""
    out = OmegaConf.to_container(cfg, resolve=True)
    if run_id is not None:
        out["run_id"] = run_id
    return out


def _kwargs(group: DictConfig) -> dict[str, Any]:
    return {k: v for k, v in config_dict(group).items() if k != "name"}


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The run's DataModule; it reads no file until `setup` (the family's DataModule contract)."""
    task_cls = registry.get(cfg.task.name, kind="task").builder
    datamodule = registry.create(task_cls.data_family(cfg), cfg.data.name, kind="dataset",
                                 data_dir=str(cfg.paths.data_dir), **_kwargs(cfg.data))
    return task_cls.wrap_datamodule(datamodule, cfg)


def build_task(cfg: DictConfig, datamodule: L.LightningDataModule, resolved: dict[str, Any]) -> L.LightningModule:
    """Backbone first (sized by the data), then what it asks of the data, then the task around it."""
    task = registry.get(cfg.task.name, kind="task")
    task_cls = task.builder
    family = task_cls.backbone_family(cfg)
    backbone = registry.create(family, cfg.model.name, **task_cls.backbone_inputs(datamodule), **_kwargs(cfg.model))
    task_cls.connect(backbone, datamodule)
    if registry.get(cfg.model.name, task=family).meta.get("wants_sam") and not cfg.task.get("sam_rho"):
        log.warning("model=%s is meant to be trained with sharpness-aware minimisation: set task.sam_rho > 0 "
                    "(its paper: 0.5-1.0 on ETT)", cfg.model.name)
    task_kwargs = {k: v for k, v in _kwargs(cfg.task).items() if k not in ("monitor", "mode", *task_cls.data_keys)}
    task_kwargs.update(task_cls.head_inputs(datamodule))
    task_kwargs.update(task_cls.config_inputs(cfg))
    return task.build(backbone=backbone, run_config=resolved, **task_kwargs)


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[Callback]:
    c = cfg.callbacks
    monitor, mode = cfg.task.monitor, cfg.task.mode
    checkpoints = run_dir / "checkpoints"
    callbacks: list[Callback] = [
        BestCheckpoint(dirpath=checkpoints, filename="best-epoch{epoch:03d}", monitor=monitor, mode=mode,
                       save_top_k=c.checkpoint.save_top_k, every_n_epochs=c.checkpoint.every_n_epochs,
                       save_weights_only=c.checkpoint.best_weights_only, auto_insert_metric_name=False,
                       min_seconds=c.checkpoint.best_every_seconds),
        LastCheckpoint(checkpoints, every_n_epochs=c.checkpoint.every_n_epochs,
                       min_seconds=c.checkpoint.last_every_seconds),
        RNGStateCallback(), ThroughputMonitor(), EpochSummary(), SlurmRequeue(), ValidationMemory(),
    ]
    bars = ("tqdm", "rich", "none")
    if c.progress_bar not in bars:
        raise UserError(f"callbacks.progress_bar={c.progress_bar} is unknown; use one of {', '.join(bars)}")
    # trainer.enable_progress_bar=false is the Trainer's own switch: honour it instead of clashing.
    bar = progress_bar(c.progress_bar) if cfg.trainer.get("enable_progress_bar", True) else None
    if bar is not None:
        callbacks.append(bar)
    if c.get("lr_monitor") and cfg.logger.name != "none":
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if c.get("early_stopping"):
        # Checked after each validation only: at a training epoch's end there may be none (max_steps mid-epoch).
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=int(c.early_stopping),
                                       check_on_train_epoch_end=False))
    if c.get("analyse"):  # the analyse command's tools on the best weights at fit end (callbacks/analysis.py)
        from labformer.callbacks.analysis import Analysis  # imported here: the analysis imports the builders

        callbacks.append(Analysis(c.analyse, run_dir))
    return callbacks


def build_trainer(cfg: DictConfig, run_dir: Path, logger: Any, callbacks: list[Callback]) -> L.Trainer:
    from labformer.utils import callback_hooks

    callback_hooks.install()  # the same hooks called, without the cost of empty ones (see its docstring)
    kwargs = config_dict(cfg.trainer)
    check_arguments(L.Trainer.__init__, kwargs, where="trainer")
    if cfg.callbacks.progress_bar == "none":
        kwargs["enable_progress_bar"] = False
    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():  # requeueing is SlurmRequeue's job (see its docstring)
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return L.Trainer(default_root_dir=str(run_dir), logger=logger if logger is not None else False,
                     callbacks=callbacks, plugins=plugins, **kwargs)
