"""Checkpoint files: atomic writes off the training thread, and reading with errors a user can act on."""
from __future__ import annotations

import io
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from labformer.errors import UserError
from labformer.utils.atomic_files import write_atomic

CONFIG_KEY = "labformer"  # where the resolved run config lives inside a checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file, fsync and rename: a kill mid-write never leaves a torn checkpoint.

    The checkpoint is serialised on the calling thread (so the file holds the weights of that moment,
    whatever training does next); writing, fsync (milliseconds each, once per improved epoch: a tenth
    of a full-batch Cora epoch) and renaming happen on one background thread, and so do removals of
    superseded checkpoints, in the order they were asked for. At most one write waits: a save waits
    for the previous one, which bounds the memory held to one serialised checkpoint. `teardown`
    (Lightning calls it at the end of fit, validate and test, and after an exception) and `wait` block
    until every file is in place; a failed write is raised there, or at the next save.
    """

    def __init__(self) -> None:
        super().__init__()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labformer-checkpoint")
        self._pending.append(self._executor.submit(fn, *args))

    def wait(self) -> None:
        """Block until every queued write and removal is done; raise the first failure."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        self.wait()
        self._submit(write_atomic, Path(path), buffer.getbuffer(), True)

    def remove_checkpoint(self, path: _PATH) -> None:
        self._submit(super().remove_checkpoint, path)

    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


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
