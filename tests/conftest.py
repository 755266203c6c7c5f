"""Shared fixtures: compose the real config tree in-process with small, quiet overrides."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from labformer import CONF_DIR
from labformer.config_store import compose_config as compose_conf

REPO = CONF_DIR.parent
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(min(2, os.cpu_count() or 1))
if "LABFORMER_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["LABFORMER_DATA_DIR"] = str(SHARED_DATA)


def require_data(relative: str) -> Path:
    """The file under the data directory, or skip the test saying which file and how to supply it."""
    path = Path(os.environ.get("LABFORMER_DATA_DIR", "data")) / relative
    if not path.exists():
        pytest.skip(f"{path} is absent (set LABFORMER_DATA_DIR to a folder holding {relative})")
    return path


# Quiet, fast, tracker-free runs unless a test asks otherwise.
QUIET = ["logger=none", "callbacks.progress_bar=none", "trainer.enable_model_summary=false"]


def compose_config(*overrides: str, config: str = "train", log_dir: Path | None = None) -> DictConfig:
    base = [f"paths.log_dir={log_dir}"] if log_dir else []
    return compose_conf(*base, *(QUIET if config == "train" else []), *overrides, config=config)


@pytest.fixture
def make_config(tmp_path):
    """make_config("model=vit_tiny", ...) -> a composed train config logging under tmp_path."""
    return lambda *overrides, config="train": compose_config(*overrides, config=config, log_dir=tmp_path / "logs")


@pytest.fixture
def registry_snapshot():
    """Entries a test registers (probes, duplicates) are gone after it: the registry is restored."""
    from labformer import registry

    registry.kinds()  # load every family first, so the snapshot holds them
    saved = {kind: dict(entries) for kind, entries in registry._REGISTRY.items()}
    yield registry
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """Environment for a subprocess: a fresh HOME (to prove nothing is written there)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "LABFORMER_RUN_ID", "SLURM_"))}
    # torchmetrics imports matplotlib, whose font cache would land in HOME: that cache is not ours to test.
    # The registry's index is a cache with its own setting (default ~/.cache/labformer): kept beside the run.
    env.update(HOME=str(home), LABFORMER_LOG_DIR=str(tmp_path / "logs"), PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="2", MPLCONFIGDIR=str(tmp_path / "matplotlib"),
               LABFORMER_CACHE_DIR=str(tmp_path / "labformer-cache"))
    return env


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real one-node SLURM cluster on localhost for the session (tests/slurm_cluster.py)."""
    from slurm_cluster import LocalSlurm, missing_tools

    missing = missing_tools()
    if missing:
        pytest.skip(f"SLURM tests need {', '.join(missing)} (Debian: slurmctld slurmd slurm-client munge; "
                    ".ci/run installs them)")
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster runs its daemons as root")
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny models: one thread is faster, and far faster on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fake_omniglot_runs(path: Path, runs: int, ways: int, order) -> None:
    """Omniglot's all_runs.zip's layout: runNN/{training/classKK.png,test/itemKK.png,class_labels.txt}; test item
    i is of training class order[i] (a stroke at that class's position, shifted by a pixel)."""
    import io
    import zipfile

    from PIL import Image

    def png(k: int, shift: int) -> bytes:
        img = Image.new("1", (105, 105), 1)
        img.paste(0, (8 * k + shift, 10, 8 * k + shift + 6, 60))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    with zipfile.ZipFile(path, "w") as zf:
        for r in range(1, runs + 1):
            lines = []
            for k in range(ways):
                zf.writestr(f"run{r:02d}/training/class{k + 1:02d}.png", png(k, 0))
                zf.writestr(f"run{r:02d}/test/item{k + 1:02d}.png", png(order[k], 1))
                lines.append(f"run{r:02d}/test/item{k + 1:02d}.png run{r:02d}/training/class{order[k] + 1:02d}.png")
            zf.writestr(f"run{r:02d}/class_labels.txt", "\n".join(lines) + "\n")
