"""What only a real process shows: exit codes, SIGKILL + resume, W&B offline files, eval.py."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labformer import CONF_DIR

REPO = CONF_DIR.parent
pytestmark = pytest.mark.subprocess

FAST = ["trainer.max_epochs=3", "trainer.deterministic=true", "callbacks.progress_bar=none",
        "data.batch_size=64"]


def run(script: str, *args: str, env: dict, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *args], env=env, cwd=REPO, text=True,
                          capture_output=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["model=vit_tny"], "unknown model 'vit_tny'. Did you mean: vit_tiny"),
    (["logger=wandbb"], "unknown logger 'wandbb'. Did you mean: wandb"),
    (["trainer.max_epochs=ten", "logger=none"], "trainer.max_epochs must be"),
])
def test_bad_input_exits_2_with_the_fix(isolated_env, args, message):
    proc = run("train.py", *args, env=isolated_env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_eval_of_a_missing_checkpoint_exits_2(isolated_env, tmp_path):
    proc = run("eval.py", f"ckpt_path={tmp_path / 'none.ckpt'}", env=isolated_env)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_sigkill_then_rerun_resumes_the_same_run_and_matches_an_uninterrupted_one(isolated_env, tmp_path):
    logs = Path(isolated_env["LABFORMER_LOG_DIR"])
    reference = run("train.py", "run_id=ref", "logger=csv", *FAST, env=isolated_env)
    assert reference.returncode == 0, reference.stderr[-3000:]

    args = [sys.executable, str(REPO / "train.py"), "run_id=killed", "logger=wandb", *FAST]
    proc = subprocess.Popen(args, env=isolated_env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = logs / "runs" / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 180
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)  # no handler runs: as a node failure or OOM kill
    proc.wait()

    resumed = run("train.py", "run_id=killed", "logger=wandb", *FAST, env=isolated_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr + resumed.stdout
    ref_metrics = json.loads((logs / "runs" / "ref" / "test_metrics.json").read_text())
    res_metrics = json.loads((logs / "runs" / "killed" / "test_metrics.json").read_text())
    assert res_metrics == ref_metrics  # exactly

    # One W&B run id across both processes, offline, inside the run directory; nothing in $HOME.
    offline = sorted((logs / "runs" / "killed" / "wandb").glob("offline-run-*-killed"))
    assert len(offline) == 2, list((logs / "runs" / "killed" / "wandb").iterdir())
    assert "wandb sync" in resumed.stderr + resumed.stdout
    assert not any(Path(isolated_env["HOME"]).rglob("*")), list(Path(isolated_env["HOME"]).rglob("*"))

    # eval.py rebuilds everything from the checkpoint alone and reports the same numbers.
    best = next((logs / "runs" / "ref" / "checkpoints").glob("best-*.ckpt"))
    evaluated = run("eval.py", f"ckpt_path={best}", env=isolated_env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    written = json.loads(next((logs / "eval").glob("*/metrics.json")).read_text())
    assert {k: written[k] for k in ref_metrics} == ref_metrics
