"""sbatch templates against a real local SLURM cluster: completion, preemption + requeue +
exact resume, and a 2-task DDP job through srun."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from labformer import CONF_DIR

REPO = CONF_DIR.parent
pytestmark = pytest.mark.subprocess
RUN = ["trainer.max_epochs=3", "trainer.deterministic=true", "callbacks.progress_bar=none",
       "data.batch_size=64", "logger=wandb"]


def job_env(isolated_env: dict) -> dict:
    return {**isolated_env, "LABFORMER_PYTHON": sys.executable}


def metrics(logs: Path, run_id: str) -> dict:
    return json.loads((logs / "runs" / run_id / "test_metrics.json").read_text())


def test_preempted_job_requeues_and_resumes_to_the_same_metrics(slurm, isolated_env, tmp_path):
    env, logs = job_env(isolated_env), Path(isolated_env["LABFORMER_LOG_DIR"])
    out = f"--output={tmp_path}/%j.out"
    reference = slurm.sbatch(out, "--cpus-per-task=1", "slurm/train_cpu.sbatch", *RUN, env=env, cwd=REPO)
    preempted = slurm.sbatch(out, "--cpus-per-task=1", "slurm/train_cpu.sbatch", *RUN, env=env, cwd=REPO)

    last = logs / "runs" / f"slurm-{preempted}" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline:
        assert slurm.state(preempted) in ("PENDING", "RUNNING", "CONFIGURING"), \
            (tmp_path / f"{preempted}.out").read_text()
        time.sleep(0.2)
    assert last.exists(), "no checkpoint before the deadline"
    slurm.run("scancel", "--signal=USR1", preempted)  # what --signal=USR1@<s> sends before the limit

    assert slurm.wait(reference) == "COMPLETED", (tmp_path / f"{reference}.out").read_text()
    assert slurm.wait(preempted) == "COMPLETED", (tmp_path / f"{preempted}.out").read_text()
    assert "REQUEUED" in slurm.final_states(preempted) or "requeued" in (tmp_path / f"{preempted}.out").read_text()
    log = (tmp_path / f"{preempted}.out").read_text()
    assert "resuming" in log, log[-3000:]
    assert metrics(logs, f"slurm-{preempted}") == metrics(logs, f"slurm-{reference}")
    # Both attempts wrote into one W&B run (same id), inside the run directory.
    wandb_runs = list((logs / "runs" / f"slurm-{preempted}" / "wandb").glob(f"offline-run-*-slurm-{preempted}"))
    assert len(wandb_runs) == 2, wandb_runs


def test_two_task_ddp_job_through_srun(slurm, isolated_env, tmp_path):
    env, logs = job_env(isolated_env), Path(isolated_env["LABFORMER_LOG_DIR"])
    job = slurm.sbatch(f"--output={tmp_path}/%j.out", "--ntasks-per-node=2", "--cpus-per-task=1",
                       "slurm/train_cpu.sbatch", "trainer.strategy=ddp", "trainer.max_epochs=1",
                       "callbacks.progress_bar=none", "logger=csv", env=env, cwd=REPO)
    assert slurm.wait(job) == "COMPLETED", (tmp_path / f"{job}.out").read_text()[-4000:]
    out = (tmp_path / f"{job}.out").read_text()
    assert "MEMBER: 1/2" in out and "MEMBER: 2/2" in out, out[-3000:]  # both ranks joined
    assert metrics(logs, f"slurm-{job}")["test/acc"] > 0


def test_hydra_multirun_through_the_submitit_launcher(slurm, isolated_env, tmp_path):
    env = {**job_env(isolated_env), "SLURM_CONF": str(slurm.conf)}
    logs = Path(isolated_env["LABFORMER_LOG_DIR"])
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", "run_id=sweep", "seed=1,2", "trainer.max_epochs=1", "logger=csv",
         "callbacks.progress_bar=none"], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for job in (0, 1):
        run_dir = logs / "multiruns" / "sweep" / str(job)
        assert json.loads((run_dir / "test_metrics.json").read_text())["test/acc"] > 0
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["run_id"] == f"sweep-{job}"
