"""Task, model and weights from a checkpoint alone, and a fixed batch of its data.

The rebuild is pipeline.evaluate's (both call build_stored): the resolved run config stored under
CONFIG_KEY, the data directory of this machine, the run's seed, then the platform's own builders.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.model_helpers import is_overridden
from omegaconf import DictConfig, OmegaConf

from labformer.builders import build_datamodule, build_task
from labformer.errors import UserError
from labformer.utils.checkpoint_io import CONFIG_KEY, read_checkpoint


@dataclass
class Rebuilt:
    path: Path
    config: DictConfig  # the run's resolved config, data_dir pointed at this machine's data
    datamodule: L.LightningDataModule
    module: L.LightningModule  # weights loaded, eval mode, on the CPU


def local_data_dir() -> str:
    """Where this machine keeps data: conf/paths resolved as eval.py resolves them (LABFORMER_DATA_DIR)."""
    from labformer.config_store import compose_config

    return str(compose_config(config="eval").paths.data_dir)


def build_stored(path: str | Path, data_dir: str, batch_size: int | None = None,
                 ) -> tuple[dict[str, Any], DictConfig, L.LightningDataModule, L.LightningModule]:
    """(the checkpoint's contents, its run config with data read from `data_dir`, the DataModule and the task
    that config builds), seeded as the run was; the weights are not loaded (eval.py lets the Trainer do it)."""
    ckpt = read_checkpoint(path)  # a missing, corrupt or foreign file is a UserError naming it
    stored = OmegaConf.create(ckpt[CONFIG_KEY]["config"])
    # Data lives where this machine keeps it, not where the checkpoint was written.
    stored.paths.data_dir = data_dir
    if batch_size:
        stored.data.batch_size = batch_size
    L.seed_everything(stored.seed, workers=True, verbose=False)
    datamodule = build_datamodule(stored)
    module = build_task(stored, datamodule, OmegaConf.to_container(stored))
    return ckpt, stored, datamodule, module


def rebuild(path: str | Path) -> Rebuilt:
    ckpt, stored, datamodule, module = build_stored(path, local_data_dir())
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise UserError(f"checkpoint {path}: its weights do not fit the model its config builds "
                        f"({str(e).splitlines()[0][:200]}). Was it written by another version of the code? "
                        "Analyse it with the commit that trained it") from None
    module.on_load_checkpoint(ckpt)  # a family's own restore step, as the Trainer would run it
    return Rebuilt(Path(path), stored, datamodule, module.cpu().eval())


def model_input(batch: Any) -> Any:
    """What the task's forward takes: images, tokens or windows come first in a tuple; dict batches hold `x`."""
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict) and "x" in batch:
        return batch["x"]
    return batch


def first_items(datamodule: L.LightningDataModule, n: int) -> tuple[str, Any]:
    """(split, the first `n` inputs of the test split, else of the validation split): loaders in order, so fixed."""
    if n < 1:
        raise UserError(f"--batch {n}: give the number of items to analyse, at least 1")
    datamodule.prepare_data()
    for split, stage, hook in (("test", "test", "test_dataloader"), ("validation", "validate", "val_dataloader")):
        if not is_overridden(hook, datamodule):
            continue
        datamodule.setup(stage)
        loader = getattr(datamodule, hook)()
        loader = loader[0] if isinstance(loader, (list, tuple)) else loader
        if loader is None:
            continue
        parts: list[Any] = []
        for batch in loader:
            x = model_input(batch)
            if not isinstance(x, torch.Tensor):  # a graph batch: not sliceable into items, take it whole
                return split, x
            parts.append(x)
            if sum(len(p) for p in parts) >= n:
                break
        if parts:
            return split, torch.cat(parts)[:n]
    raise UserError(f"dataset '{datamodule.__class__.__name__}' has neither a test nor a validation split "
                    "to take a batch from")
