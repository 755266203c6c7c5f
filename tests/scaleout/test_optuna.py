"""Optuna sweeper presets: the study optimises the monitored metric, a crashing trial is
marked failed while the study goes on, and an SQLite study resumes."""
from __future__ import annotations

import subprocess
import sys

import optuna
import pytest

from labformer import CONF_DIR

REPO = CONF_DIR.parent
pytestmark = pytest.mark.subprocess


def study(storage: str, trials: int, env: dict) -> subprocess.CompletedProcess:
    # batch_size 0 is a bad combination: those trials fail, the others train.
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "hparams_search=vision_optuna",
         f"hydra.sweeper.storage={storage}", f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.study_name=t",
         "hydra.sweeper.sampler.seed=1", "data.batch_size=choice(64,0)",
         "trainer.max_epochs=1", "logger=none", "callbacks.progress_bar=none", "test=false"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_failed_trials_do_not_stop_the_study_and_a_sqlite_study_resumes(isolated_env, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = study(storage, 4, isolated_env)
    assert first.returncode == 0, first.stderr[-4000:]
    trials = optuna.load_study(study_name="t", storage=storage).trials
    states = [t.state.name for t in trials]
    assert len(trials) == 4 and "FAIL" in states and "COMPLETE" in states, states
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert all(0.0 <= t.value <= 1.0 for t in done)  # val/acc, maximised

    again = study(storage, 2, isolated_env)
    assert again.returncode == 0, again.stderr[-4000:]
    assert len(optuna.load_study(study_name="t", storage=storage).trials) == 6  # resumed, not restarted
