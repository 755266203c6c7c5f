"""One key names a run: its directory, its last.ckpt and its W&B run id.

Explicit `run_id=` wins; else the SLURM job id (so a requeued job finds its own run);
else a timestamp fixed once per process. DDP children inherit the parent's choice
through LABFORMER_RUN_ID so every rank agrees; a Hydra multirun job appends its number.
"""
from __future__ import annotations

import os
import re
import secrets
import time

from omegaconf import OmegaConf

from labformer import CONF_DIR
from labformer.errors import UserError

ENV_KEY = "LABFORMER_RUN_ID"
_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_timestamp: str | None = None


def timestamp() -> str:
    """This process's timestamp id, e.g. 20261128-093012-4f2a (suffix: two runs in one second)."""
    global _timestamp
    if _timestamp is None:
        _timestamp = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    return _timestamp


def forget_timestamp() -> None:
    """The next run composed in this process gets a new timestamp (tests, notebooks)."""
    global _timestamp
    _timestamp = None


def resolve_run_id(explicit: object = None) -> str:
    if explicit not in (None, "", "None", "null"):
        run_id = str(explicit)
        if not _VALID.match(run_id):
            raise UserError(f"run_id={run_id!r} is not usable as a directory and W&B run name. "
                            "Use letters, digits, '.', '_' and '-' (at most 128), e.g. run_id=vit-digits-1")
        return run_id
    if os.environ.get(ENV_KEY) and os.environ.get("LOCAL_RANK", "0") != "0":
        return os.environ[ENV_KEY]  # a DDP child re-running the script: take rank 0's id
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if job:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"slurm-{job}" + (f"_{task}" if os.environ.get("SLURM_ARRAY_JOB_ID") and task else "")
    return timestamp()


def register_resolvers() -> None:
    """`${lf.run_id:${run_id}}`, `${lf.timestamp:}` and `${lf.root:}` for the config tree."""
    if not OmegaConf.has_resolver("lf.run_id"):
        OmegaConf.register_new_resolver("lf.run_id", resolve_run_id)
        OmegaConf.register_new_resolver("lf.timestamp", timestamp)
        OmegaConf.register_new_resolver("lf.root", lambda: str(CONF_DIR.parent))
