"""Checkpoint files: atomic writes, and reading with errors a user can act on."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from labformer.errors import UserError

CONFIG_KEY = "labformer"  # where the resolved run config lives inside a checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to `<file>.tmp` and rename: a kill mid-write never leaves a torn last.ckpt."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a labformer checkpoint on the CPU, or explain why it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist. Give the path of a .ckpt file written by "
                        "train.py, e.g. logs/runs/<run_id>/checkpoints/last.ckpt")
    try:
        # Our checkpoints hold only tensors, numbers, strings and dicts: refuse anything that runs code.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                        "It is corrupt or truncated: use another checkpoint of the run "
                        "(last.ckpt or best-*.ckpt)") from None
    if not isinstance(ckpt, dict) or CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise UserError(f"{path} is not a labformer checkpoint (it has no stored run config). "
                        "eval.py and init_from take checkpoints written by train.py; "
                        "to use foreign weights, load them in a model builder instead")
    return ckpt
