"""Helpers shared by the vision benchmarks: config composition, a step timer, machine facts."""
from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import lightning as L

REPO = Path(__file__).resolve().parents[2]


def compose(*overrides: str):
    """The real Hydra config tree (conf/train.yaml) with `overrides`, as train.py composes it."""
    from labformer.config_store import compose_config

    return compose_config(*overrides)


class StepTimer(L.Callback):
    """perf_counter at the end of every training batch, and the time spent validating.

    Intervals between consecutive `on_train_batch_end` calls hold everything a step
    costs in steady state: fetching and augmenting the batch, forward, backward,
    optimiser and scheduler, metrics, logging and the progress bar.
    """

    def __init__(self) -> None:
        self.step_ends: list[float] = []
        self.cpu_ends: list[float] = []  # process CPU seconds (all threads of this process)
        self.params = 0
        self.threads: set[int] = set()
        self.val_seconds = 0.0
        self.fit_seconds = 0.0
        self._t = self.fit_start = self.fit_start_cpu = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import torch

        self.step_ends.append(time.perf_counter())
        self.cpu_ends.append(time.process_time())
        self.threads.add(torch.get_num_threads())

    def on_validation_start(self, trainer, pl_module) -> None:
        self._t = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.val_seconds += time.perf_counter() - self._t

    def on_train_start(self, trainer, pl_module) -> None:
        self.fit_start, self.fit_start_cpu = time.perf_counter(), time.process_time()
        self.params = sum(p.numel() for p in pl_module.parameters())

    def on_train_end(self, trainer, pl_module) -> None:
        self.fit_seconds = time.perf_counter() - self.fit_start

    def window(self, warmup: int, steps: int) -> tuple[float, float]:
        """(wall, CPU) seconds from the end of step `warmup` to the end of step `warmup + steps`."""
        return window(self.step_ends, self.cpu_ends, warmup, steps)


def window(wall_ends: list[float], cpu_ends: list[float], warmup: int, steps: int) -> tuple[float, float]:
    if warmup < 1 or len(wall_ends) < warmup + steps:
        raise RuntimeError(f"{len(wall_ends)} steps ran; need warmup >= 1 and {warmup} + {steps}")
    last, first = warmup + steps - 1, warmup - 1
    return wall_ends[last] - wall_ends[first], cpu_ends[last] - cpu_ends[first]


@contextlib.contextmanager
def extra_callbacks(*callbacks: L.Callback) -> Iterator[list[L.Callback]]:
    """Run `pipeline.train` with `callbacks` appended to the ones the config builds.

    The pipeline has no hook for extra callbacks, so its `build_callbacks` is wrapped
    for the duration; yields the full list the trainer got (to read e.g. ThroughputMonitor).
    """
    from labformer import pipeline

    built: list[L.Callback] = []
    original = pipeline.build_callbacks

    def build(cfg, run_dir):
        built.extend(original(cfg, run_dir) + list(callbacks))
        return built

    pipeline.build_callbacks = build
    try:
        yield built
    finally:
        pipeline.build_callbacks = original


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def load_warning(*loads: str) -> str:
    """A sentence for results taken while other work ran on the machine (1-min load > cores)."""
    worst = max(float(load.split()[0]) for load in loads)
    cores = os.cpu_count() or 1
    if worst <= cores:
        return ""
    return (f"**Caution:** other processes shared the machine (1-minute load average up to {worst:g} on "
            f"{cores} cores): wall-clock numbers are depressed and noisy. Rerun on an idle machine "
            "before quoting them.")


def machine() -> dict[str, Any]:
    import lightning
    import timm
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": sys.version.split()[0], "torch": torch.__version__, "lightning": lightning.__version__,
            "timm": timm.__version__, "code": code_version(), "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def code_version() -> str:
    """Which labformer ran: this checkout (and whether it had local edits) or a snapshot of a commit.

    While others edit the tree, run against a clean snapshot of HEAD instead, e.g.
    `git archive HEAD | tar -x -C /tmp/snap && git rev-parse HEAD > /tmp/snap/COMMIT` and
    `PYTHONPATH=/tmp/snap/platform` (it takes precedence over the editable install).
    """
    import labformer

    source = Path(labformer.__file__).resolve().parents[1]
    stamp = source.parent / "COMMIT"
    if source == REPO / "platform" and not stamp.is_file():  # a snapshot's own scripts see it as REPO
        dirty = _git("status", "--porcelain", "platform", "conf")
        return _git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else " (clean)")
    commit = stamp.read_text().strip()[:10] if stamp.is_file() else "unknown commit"
    return f"{commit} (clean snapshot in {source.parent}, via PYTHONPATH)"


def machine_lines(info: dict[str, Any]) -> list[str]:
    return [f"- Date: {info['date']}",
            f"- CPU: {info['cpu']}, {info['cores']} cores visible; torch threads: {info['torch_threads']}",
            f"- Python {info['python']}, torch {info['torch']}, lightning {info['lightning']}, "
            f"timm {info['timm']}",
            f"- labformer code: git {info['code']}"]


def command_line() -> str:
    return " ".join([".venv/bin/python", str(Path(sys.argv[0]).resolve().relative_to(REPO)), *sys.argv[1:]])
