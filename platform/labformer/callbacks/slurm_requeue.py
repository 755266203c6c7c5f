"""Requeue a SLURM job on SIGUSR1 (sent before the time limit or by preemption).

Lightning's own handler also saves a mid-epoch "hpc" checkpoint; resuming mid-epoch
does not replay the same batches, so a resumed run would drift from an uninterrupted one.
We requeue only: the job restarts under the same job id, hence the same run_id, and
`ckpt_path=auto` resumes from the last epoch-end `last.ckpt`, reproducing the run exactly.
The cost is the partial epoch, which is redone.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess

import lightning as L

log = logging.getLogger("labformer")


def slurm_job_id() -> str | None:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class SlurmRequeue(L.Callback):
    def __init__(self, sig: signal.Signals = signal.SIGUSR1) -> None:
        self.sig = sig
        self.requested = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and slurm_job_id():
            signal.signal(self.sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            return
        self.requested = True
        job = slurm_job_id()
        if int(os.environ.get("SLURM_PROCID", "0")) != 0:
            return  # one requeue per job, from the first task
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        if result.returncode == 0:
            log.info("signal %s: requeued SLURM job %s; it resumes from last.ckpt", signum, job)
        else:
            log.warning("signal %s: `scontrol requeue %s` failed: %s", signum, job, result.stderr.strip())
