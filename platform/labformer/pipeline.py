"""train(cfg) and evaluate(cfg): identity -> checks -> seed -> build -> fit/test -> report."""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from labformer import registry
from labformer.builders import build_callbacks, build_datamodule, build_task, build_trainer, config_dict
from labformer.callbacks.epoch_summary import format_metrics
from labformer.callbacks.validation_memory import ValidationMemory
from labformer.errors import UserError
from labformer.results.record import provenance, write_record
from labformer.utils.checkpoint_io import CONFIG_KEY, read_checkpoint
from labformer.utils.loggers import describe_wandb
from labformer.utils.scaleout import check_multirun_strategy
from labformer.utils.run_identity import ENV_KEY, forget_timestamp, resolve_run_id

log = logging.getLogger("labformer")


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    test_metrics: dict[str, float]
    best_ckpt: str | None
    last_ckpt: str | None
    monitor_value: float | None


def _hydra_multirun():
    """The Hydra config of a multirun job, else None (single runs, tests, notebooks)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc if hc.mode == RunMode.MULTIRUN else None


def _run_identity(cfg: DictConfig) -> tuple[str, Path]:
    run_id = resolve_run_id(cfg.get("run_id"))
    run_dir = Path(cfg.paths.run_dir)
    hc = _hydra_multirun()
    check_multirun_strategy(cfg, multirun=hc is not None)
    if hc is not None:  # one identity per job inside the sweep's identity
        sweep_id = Path(hc.sweep.dir).name  # resolved once for the whole sweep
        run_dir = Path(hc.runtime.output_dir)
        # A run_id that interpolates a swept value (`run_id=cora-s${seed}`) names each job; otherwise the
        # job's folder does (the job number by default, or a stable `hydra.sweep.subdir` such as `s${seed}`).
        per_job = "${" in str(OmegaConf.to_container(cfg, resolve=False).get("run_id") or "")
        run_id = run_id if per_job else f"{sweep_id}-{run_dir.name}"
    os.environ[ENV_KEY] = run_id  # DDP children re-run this script: they must agree
    # Freeze both, so later resolutions of the config (checkpoints, W&B) see the same values.
    cfg.run_id, cfg.paths.run_dir = run_id, str(run_dir)
    return run_id, run_dir


def _resume_path(cfg: DictConfig, run_dir: Path) -> str | None:
    ckpt_path, init_from = cfg.get("ckpt_path"), cfg.get("init_from")
    last = run_dir / "checkpoints" / "last.ckpt"
    if ckpt_path in (None, "null", "none"):
        if last.exists():
            raise UserError(f"run directory {run_dir} already has {last.name}: refusing to overwrite it. "
                            "Resume it with ckpt_path=auto, or start a new run with another run_id=")
        return None
    if ckpt_path == "auto":
        if last.exists():
            if init_from:
                log.info("resuming %s; init_from=%s is ignored (it initialised this run)", last, init_from)
            return str(last)
        return None
    if init_from:
        raise UserError(f"ckpt_path={ckpt_path} resumes a run and init_from={init_from} starts one from "
                        "weights: give only one of them")
    read_checkpoint(ckpt_path)  # fails clearly on a corrupt or foreign file
    return str(ckpt_path)


def _load_init_weights(module: L.LightningModule, path: str, task: str | None = None) -> None:
    ckpt = read_checkpoint(path)
    state, new_parts = ckpt["state_dict"], ("head.",)
    source = ((ckpt[CONFIG_KEY].get("config") or {}).get("task") or {}).get("name")
    transfer = bool(task and source and source != task)
    if transfer:
        # Pretrained by another task (task=contrastive): its backbone transfers, this task's own parts are new.
        state = {k: v for k, v in state.items() if k.startswith("backbone.")}
        new_parts = tuple({k.split(".")[0] + "." for k in module.state_dict() if not k.startswith("backbone.")})
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # same names, other sizes
        raise UserError(f"init_from={path}: its weights do not fit this model ({str(e).splitlines()[-1].strip()}). "
                        "Use a checkpoint of the same model= and its sizes") from None
    if unexpected or [k for k in missing if not k.startswith(new_parts)]:
        raise UserError(f"init_from={path}: its weights do not fit this model "
                        f"(missing {missing[:5]}, unexpected {unexpected[:5]}). "
                        "Use a checkpoint of the same model= and its sizes")
    log.info("initialised weights from %s%s", path, f" (backbone of a task={source} run)" if transfer
             else " (new head)" if missing else "")


def _quiet_lightning_console() -> None:
    # Lightning adds its own console handler at import; Hydra's root handler already prints
    # (and files) its messages, so without this every Lightning line appears twice.
    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lightning_log = logging.getLogger(name)
        lightning_log.propagate = True
        for handler in list(lightning_log.handlers):
            if type(handler) is logging.StreamHandler:
                lightning_log.removeHandler(handler)


def train(cfg: DictConfig) -> RunResult:
    started = time.perf_counter()
    _quiet_lightning_console()
    run_id, run_dir = _run_identity(cfg)
    task_name = cfg.task.name
    # Registry checks first: a bad task/model/data pair fails before any data is read.
    task_cls = registry.get(task_name, kind="task").builder
    registry.get(cfg.data.name, kind="dataset", task=task_cls.data_family(cfg))
    registry.get(cfg.model.name, task=task_cls.backbone_family(cfg))
    registry.get(cfg.logger.name, kind="logger")
    resume = _resume_path(cfg, run_dir)

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    # Settled before anything is written: config.yaml and every checkpoint record what the run uses.
    monitor, mode = task_cls.resolve_monitor(cfg, datamodule)
    with open_dict(cfg.task):
        cfg.task.monitor, cfg.task.mode = monitor, mode
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = config_dict(cfg, run_id)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    module = build_task(cfg, datamodule, resolved)
    module.provenance = provenance(resolved)
    if cfg.get("init_from") and resume is None:
        _load_init_weights(module, cfg.init_from, cfg.task.name)
    if cfg.get("compile"):
        # In place: the state_dict keys stay those of the plain module, so checkpoints load either way,
        # and every holder of the backbone (the contrastive encoder) runs the compiled forward.
        module.backbone.compile()

    logger = registry.create(None, cfg.logger.name, kind="logger", run_dir=run_dir, run_id=run_id,
                             **{k: v for k, v in config_dict(cfg.logger).items() if k != "name"})
    callbacks = build_callbacks(cfg, run_dir)
    trainer = build_trainer(cfg, run_dir, logger, callbacks)
    log.info("run %s -> %s%s", run_id, run_dir, f" (resuming {resume})" if resume else "")
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        test_metrics: dict[str, float] = {}
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint else None
        if cfg.get("test", True) and not trainer.fast_dev_run:
            test_metrics = _test(trainer, module, datamodule, best, cfg.task.monitor)
        monitor = trainer.callback_metrics.get(cfg.task.monitor)
        if checkpoint is not None and checkpoint.best_model_score is not None:
            monitor = checkpoint.best_model_score
        last = run_dir / "checkpoints" / "last.ckpt"
        result = RunResult(run_id, run_dir, test_metrics, best or None, str(last) if last.exists() else None,
                           float(monitor) if monitor is not None else None)
        if trainer.is_global_zero:
            if test_metrics:
                (run_dir / "test_metrics.json").write_text(json.dumps(test_metrics, indent=2))
            write_record(run_dir, resolved, module.provenance, test_metrics, (cfg.task.monitor, result.monitor_value),
                         result.best_ckpt, time.perf_counter() - started, resumed=resume is not None)
            _report(result, logger, trainer)
        return result
    finally:
        if _hydra_multirun() is None:  # a sweep keeps its timestamp: Hydra resolves its dir again at the end
            forget_timestamp()
        _finish_wandb(failed=bool(getattr(trainer, "interrupted", False)) or _in_exception())


def _test(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, best: str | None,
          monitor: str) -> dict[str, float]:
    memory = next((c for c in trainer.callbacks if isinstance(c, ValidationMemory)), None)
    answered = memory.answer_test(trainer, datamodule, monitor) if memory is not None else None
    if answered:
        log.info("the test split is the validation split: test metrics are the best checkpoint's validation "
                 "(%s), not a second pass over the same items", Path(best).name if best else "last epoch")
        for logger in trainer.loggers:
            logger.log_metrics(answered, step=trainer.global_step)
        return answered
    results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    return {k: float(v) for k, v in (results[0] if results else {}).items()}


def _in_exception() -> bool:
    import sys

    return sys.exc_info()[0] is not None


def _finish_wandb(failed: bool) -> None:
    import sys

    if "wandb" in sys.modules:  # only when the run used it
        import wandb

        from labformer.utils.wandb_background import wait_for_wandb

        try:
            wait_for_wandb()
        except Exception:  # a W&B that failed to start has nothing to finish; its error was raised already
            pass

        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)


def _report(result: RunResult, logger: Any, trainer: L.Trainer) -> None:
    lines = [f"run {result.run_id} finished"]
    if result.test_metrics:
        lines.append("test: " + format_metrics(result.test_metrics))
        lines.append(f"test metrics:    {result.run_dir / 'test_metrics.json'}")
    lines.append(f"record:          {result.run_dir / 'result.json'}")
    lines.append(f"run directory:   {result.run_dir}")
    lines.append(f"config:          {result.run_dir / 'config.yaml'}")
    if result.best_ckpt:
        lines.append(f"best checkpoint: {result.best_ckpt}")
    if result.last_ckpt:
        lines.append(f"last checkpoint: {result.last_ckpt}")
    for lg in trainer.loggers:
        where = describe_wandb(lg) if isinstance(lg, WandbLogger) else f"{type(lg).__name__}: {lg.log_dir}"
        if where:
            lines.append(where)
    log.info("\n".join(lines))


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Rebuild everything from the config stored in `cfg.ckpt_path` and test it."""
    from labformer.analysis.rebuild import build_stored

    _, stored, datamodule, module = build_stored(cfg.ckpt_path, cfg.paths.data_dir, cfg.get("batch_size"))
    trainer = L.Trainer(accelerator=stored.trainer.get("accelerator", "auto"), devices=1, logger=False,
                        enable_checkpointing=False, precision=stored.trainer.get("precision", "32-true"),
                        enable_progress_bar=True)
    run = trainer.test if cfg.split == "test" else trainer.validate
    results = run(module, datamodule=datamodule, ckpt_path=str(cfg.ckpt_path), verbose=False)
    metrics = {k: float(v) for k, v in results[0].items()}
    try:  # under eval.py: keep the numbers beside Hydra's log of this evaluation
        from hydra.core.hydra_config import HydraConfig

        out = Path(HydraConfig.get().runtime.output_dir) / "metrics.json"
        out.write_text(json.dumps({"ckpt_path": str(cfg.ckpt_path), "split": cfg.split, **metrics}, indent=2))
    except ValueError:
        pass
    log.info("%s of %s (run %s): %s", cfg.split, cfg.ckpt_path, stored.get("run_id"), format_metrics(metrics))
    return metrics
