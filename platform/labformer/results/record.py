"""A run's record, `result.json` in its run directory: what ran (the resolved config and its hash, the
command, the code's git commit and whether the tree was dirty), on what (machine, threads, library
versions), which repetition it is (seed / split / fold) and what came out (every test metric, the
best epoch, the wall time). Checkpoints carry the same provenance (without the outcome).

`python -m labformer results` aggregates records; a record is self-contained, so the ones under
benchmarks/ can be committed without their run directories.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from labformer import CONF_DIR

FORMAT = 1
# Settings that name or place a run, or only change what it prints: not part of what was run.
IDENTITY_KEYS = ("run_id", "paths", "logger", "ckpt_path", "callbacks.progress_bar", "trainer.enable_progress_bar",
                 "trainer.enable_model_summary", "trainer.log_every_n_steps", "data.num_workers", "data.cache_dir",
                 "data.download", "callbacks.checkpoint.last_every_seconds")
REPEAT_KEYS = ("seed", "data.split", "data.fold")  # what varies between repetitions of one configuration
LIBRARIES = ("torch", "lightning", "torchmetrics", "timm", "torch_geometric", "hydra-core", "numpy")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def is_identity(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in IDENTITY_KEYS)


def config_hash(config: dict[str, Any]) -> str:
    """Hash of what was run: the resolved config without the identity keys (repeat keys included)."""
    kept = {k: v for k, v in flatten(config).items() if not is_identity(k)}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_state(repo: Path = CONF_DIR.parent) -> dict[str, Any]:
    """{"commit": sha or None, "dirty": bool or None} of the code that runs (None outside a git checkout)."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if found:
            return found.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import torch

    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
        else []
    return {"host": platform.node(), "cpu": _cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "gpus": gpus, "python": platform.python_version(), "versions": versions}


def provenance(config: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint and a record say about where they come from (computed once per run)."""
    return {"format": FORMAT, "config_hash": config_hash(config), "git": git_state(), "command": list(sys.argv),
            "overrides": _hydra_overrides(), "machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def _hydra_overrides() -> list[str] | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:  # composed in-process (tests, benchmarks): no Hydra run
        return None


def best_epoch(best_checkpoint: str | None) -> int | None:
    found = re.search(r"best-epoch(\d+)", Path(best_checkpoint).name) if best_checkpoint else None
    return int(found.group(1)) if found else None


def write_record(run_dir: Path, config: dict[str, Any], prov: dict[str, Any], test_metrics: dict[str, float],
                 monitor: tuple[str, float | None], best_checkpoint: str | None, wall_seconds: float,
                 resumed: bool) -> Path:
    """Write `run_dir/result.json` atomically and return its path."""
    flat = flatten(config)
    record = {**prov, "run_id": config.get("run_id"),
              "repeat": {k: flat[k] for k in REPEAT_KEYS if k in flat},
              "test": test_metrics, "monitor": {"name": monitor[0], "best": monitor[1]},
              "best_epoch": best_epoch(best_checkpoint), "wall_seconds": round(wall_seconds, 2), "resumed": resumed,
              "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "config": config}
    path = run_dir / "result.json"
    tmp = path.with_name(".result.json.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    os.replace(tmp, path)
    return path
