"""Trackers, registered under kind "logger": wandb (default), csv, tensorboard, none.

W&B writes everything inside the run directory (never the home directory) and goes
offline there when no credentials are configured; `wandb sync <dir>` uploads it later.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from labformer.registry import register

ALL_TASKS = "any"  # trackers serve every task


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def keep_wandb_in(run_dir: Path) -> None:
    """Point every W&B directory into the run directory unless the user chose one."""
    base = run_dir / "wandb"
    for var, sub in (("WANDB_DIR", ""), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                     ("WANDB_DATA_DIR", "data"), ("WANDB_ARTIFACT_DIR", "artifacts")):
        path = run_dir if var == "WANDB_DIR" else base / sub
        path.mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(path)


@register("wandb", task=ALL_TASKS, kind="logger")
def wandb_logger(run_dir: Path, run_id: str, project: str = "labformer", entity: str | None = None,
                 offline: bool | str = "auto", tags: list[str] | None = None, group: str | None = None) -> Logger:
    """offline: auto (offline into the run directory when no W&B credentials are found) | true | false;
    group: W&B's run group (e.g. the reproduction table a run belongs to)."""
    from labformer.utils.wandb_background import BackgroundWandbLogger

    keep_wandb_in(run_dir)
    if offline == "auto":
        offline = os.environ.get("WANDB_MODE") == "offline" or not wandb_has_credentials()
    return BackgroundWandbLogger(project=project, entity=entity, id=run_id, name=run_id, save_dir=str(run_dir),
                       offline=bool(offline), resume="allow", tags=list(tags or []), group=group,
                       settings={"silent": True} if offline else None)


@register("csv", task=ALL_TASKS, kind="logger")
def csv_logger(run_dir: Path, run_id: str) -> Logger:
    """metrics.csv in the run directory."""
    return CSVLogger(save_dir=str(run_dir), name="", version="csv")


@register("tensorboard", task=ALL_TASKS, kind="logger")
def tensorboard_logger(run_dir: Path, run_id: str) -> Logger:
    """Event files in the run directory."""
    return TensorBoardLogger(save_dir=str(run_dir), name="", version="tensorboard")


@register("none", task=ALL_TASKS, kind="logger")
def no_logger(run_dir: Path, run_id: str) -> None:
    """No tracker: the console and the run directory's files only."""
    return None


def describe_wandb(logger: Any) -> str | None:
    """Where an offline W&B run lies and how to upload it, or its URL when online."""
    run = getattr(logger, "experiment", None)
    if run is None or not hasattr(run, "dir"):
        return None
    run_dir = Path(run.dir).parent  # .../wandb/offline-run-<time>-<id>/files -> the run folder
    if getattr(run.settings, "mode", "") == "offline" or getattr(run, "offline", False):
        return f"W&B offline run in {run_dir}; upload it with: wandb sync {run_dir}"
    return f"W&B run: {run.url}"
