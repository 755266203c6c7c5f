"""DDP as real processes on CPU (gloo), and the launch combinations we refuse."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labformer import CONF_DIR

REPO = CONF_DIR.parent
pytestmark = pytest.mark.subprocess
# No augmentation: with the shared sampling order (data/sampling.py) both runs see the same global batches.
SAME_BATCHES = ["data.augment=false", "trainer.accelerator=cpu", "trainer.max_epochs=1",
                "trainer.limit_train_batches=8", "trainer.deterministic=true", "logger=none",
                "callbacks.progress_bar=none"]


def train(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_two_process_ddp_matches_one_process_with_the_doubled_batch(isolated_env):
    logs = Path(isolated_env["LABFORMER_LOG_DIR"])
    one = train("run_id=one", "trainer.devices=1", "data.batch_size=32", *SAME_BATCHES, env=isolated_env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = train("run_id=two", "trainer.devices=2", "trainer.strategy=ddp", "data.batch_size=16", *SAME_BATCHES,
                env=isolated_env)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "global batch size 32 = 16 per device x 2 processes" in two.stderr + two.stdout

    weights = [torch.load(logs / "runs" / r / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
               for r in ("one", "two")]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        # Softmax ignores a shift of all keys, so the key bias has a true gradient of 0: Adam
        # normalises the float noise of the two reduction orders into steps of up to ~lr/20.
        atol = 1e-3 if key.endswith("qkv.bias") else 1e-5
        torch.testing.assert_close(weights[1][key], weights[0][key], rtol=1e-4, atol=atol, msg=key)
    metrics = [json.loads((logs / "runs" / r / "test_metrics.json").read_text()) for r in ("one", "two")]
    # The key-bias noise above shifts this 8-step, near-chance model's logits a little.
    assert metrics[1]["test/loss"] == pytest.approx(metrics[0]["test/loss"], abs=5e-3)
    assert metrics[1]["test/acc"] == pytest.approx(metrics[0]["test/acc"], abs=0.02)


def test_multirun_with_relaunching_ddp_is_refused(isolated_env):
    proc = train("-m", "seed=1,2", "trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu",
                 "logger=none", env=isolated_env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "would re-run the whole sweep" in proc.stderr and "ddp_spawn" in proc.stderr
