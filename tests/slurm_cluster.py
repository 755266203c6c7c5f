"""A real one-node SLURM cluster on localhost for the tests: munged, slurmctld, slurmd.

Needs Debian's `slurmctld slurmd slurm-client munge` (.ci/run installs them) and root.
No systemd: the daemons are started directly on a generated slurm.conf; SLURM_CONF points
the client commands at it. `cred_expire=10` and `KillWait=5` let a requeued job restart in
about 15 s; `jobcomp/filetxt` records final job states (sacct would need a database).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")


def missing_tools() -> list[str]:
    return [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    def __init__(self, root: Path, cpus: int = 2) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.jobcomp = root / "jobcomp.txt"
        self.cpus = cpus
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_conf(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        r = self.root
        self.conf.write_text("\n".join([
            "ClusterName=labformer-test", "SlurmctldHost=localhost", "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", "AuthInfo=cred_expire=10", "KillWait=5",
            f"StateSaveLocation={r}/state", f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/slurmctld.pid", f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log", f"SlurmdLogFile={r}/log/slurmd.log",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2",
            "SchedulerType=sched/backfill", "JobCompType=jobcomp/filetxt", f"JobCompLoc={self.jobcomp}",
            f"NodeName=localhost CPUs={self.cpus} RealMemory=8000 State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP", ""]))

    def start(self) -> None:
        self.write_conf()
        if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode != 0:
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        subprocess.run(["slurmctld"], env=self.env, check=True)
        subprocess.run(["slurmd", "-N", "localhost"], env=self.env, check=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            out = self.run("sinfo", "-h", "-o", "%T").stdout.strip()
            if out == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"SLURM did not come up: sinfo says {out!r}; see {self.root / 'log'}")

    def stop(self) -> None:
        self.run("scancel", "--user=root")
        for pid_file in ("slurmd.pid", "slurmctld.pid"):
            pid = self.root / pid_file
            if pid.exists():
                subprocess.run(["kill", pid.read_text().strip()], capture_output=True)
        time.sleep(1)

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True)

    def sbatch(self, *args: str, env: dict[str, str], cwd: Path) -> str:
        out = subprocess.run(["sbatch", "--parsable", *args], env={**env, "SLURM_CONF": str(self.conf)},
                             cwd=cwd, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"sbatch failed: {out.stderr}")
        return out.stdout.strip().split(";")[0]

    def state(self, job: str) -> str | None:
        """The job's state from squeue while it exists, else its last recorded final state."""
        out = self.run("squeue", "-h", "-j", job, "-o", "%T").stdout.strip()
        if out:
            return out
        finals = [line for line in self.jobcomp.read_text().splitlines()
                  if line.startswith(f"JobId={job} ")] if self.jobcomp.exists() else []
        return finals[-1].split("JobState=")[1].split()[0] if finals else None

    def final_states(self, job: str) -> list[str]:
        lines = self.jobcomp.read_text().splitlines() if self.jobcomp.exists() else []
        return [line.split("JobState=")[1].split()[0] for line in lines if line.startswith(f"JobId={job} ")]

    def wait(self, job: str, timeout: float = 300) -> str:
        """Poll squeue (not `sbatch --wait`: slow) until the job has left the queue."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.run("squeue", "-h", "-j", job, "-o", "%T").stdout.strip():
                states = self.final_states(job)
                if states and states[-1] not in ("REQUEUED", "PREEMPTED"):
                    return states[-1]
            time.sleep(1)
        raise TimeoutError(f"job {job} still {self.state(job)} after {timeout} s")
