"""Refuse launch combinations that silently do the wrong thing on several processes."""
from __future__ import annotations

from omegaconf import DictConfig

from labformer.errors import UserError

# Strategies for which Lightning re-executes the whole command line once per extra device.
_RELAUNCHING = {"ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false", "fsdp",
                "deepspeed"}


def processes_started_externally() -> bool:
    """SLURM (srun, one task per device) or torchrun started every rank already."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    return SLURMEnvironment.detect() or TorchElasticEnvironment.detect()


def check_multirun_strategy(cfg: DictConfig, multirun: bool) -> None:
    """Hydra multirun + a re-executing DDP strategy: rank 1 would re-run the whole sweep
    (and an Optuna sweeper would hand it different hyper-parameters)."""
    strategy = str(cfg.trainer.get("strategy", "auto"))
    devices = cfg.trainer.get("devices", 1)
    several = cfg.trainer.get("num_nodes", 1) > 1 or devices in (-1, "-1") or \
        (isinstance(devices, int) and devices > 1) or (isinstance(devices, str) and devices not in ("1", "auto"))
    if multirun and several and strategy in _RELAUNCHING and not processes_started_externally():
        raise UserError(
            f"trainer.strategy={strategy} with a Hydra multirun (-m) would re-run the whole sweep on "
            "every extra rank. Use trainer.strategy=ddp_spawn or trainer.strategy=ddp_fork for a "
            "multirun on one machine, or launch one task per GPU (hydra/launcher=slurm with "
            "tasks_per_node = GPUs, or srun/torchrun) so that no process re-executes the command line")
