"""Run records (result.json) and their aggregation, on real finished runs (tiny digits runs)."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest
import torch

from labformer import CONF_DIR, pipeline
from labformer.errors import UserError
from labformer.results.aggregate import results_table
from labformer.results.record import config_hash
from labformer.utils.checkpoint_io import CONFIG_KEY

from conftest import compose_config

TINY = ["trainer.max_epochs=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=2", "model.depth=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two seeds of one configuration, one seed of another depth, in one folder like a multirun's."""
    logs = tmp_path_factory.mktemp("logs")
    done = {}
    for run_id, extra in (("a0", ["seed=0"]), ("a1", ["seed=1"]), ("b0", ["seed=0", "model.depth=2"])):
        done[run_id] = pipeline.train(compose_config(f"run_id={run_id}", *TINY, *extra, log_dir=logs))
    return logs / "runs", done


def test_a_finished_run_writes_a_self_contained_record(runs):
    folder, done = runs
    record = json.loads((folder / "a0" / "result.json").read_text())
    assert record["test"] == pytest.approx(done["a0"].test_metrics)
    assert record["repeat"] == {"seed": 0} and record["config"]["model"]["depth"] == 1
    assert record["config_hash"] == config_hash(record["config"])
    assert record["best_epoch"] in (0, 1) and record["wall_seconds"] > 0 and record["resumed"] is False
    assert record["monitor"] == {"name": "val/acc", "best": pytest.approx(done["a0"].monitor_value)}
    commit = subprocess.run(["git", "-C", str(CONF_DIR.parent), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    assert record["git"]["commit"] == (commit or None) and isinstance(record["git"]["dirty"], (bool, type(None)))
    assert record["machine"]["threads"] >= 1 and "torch" in record["machine"]["versions"]
    # The checkpoints carry the same provenance.
    ckpt = torch.load(folder / "a0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt[CONFIG_KEY]["provenance"]["config_hash"] == record["config_hash"]


def test_seeds_of_one_configuration_aggregate_to_mean_std_and_count(runs):
    folder, done = runs
    table = results_table([str(folder / "a0"), str(folder / "a1")], by=[], metrics=["test/acc"])
    accs = [done[r].test_metrics["test/acc"] for r in ("a0", "a1")]
    row = table.splitlines()[2].split(" | ")
    assert row[0] == "| 2" and row[1] == f"{statistics.mean(accs):.4f} ± {statistics.stdev(accs):.4f}"


def test_runs_of_different_configurations_are_refused_naming_the_setting(runs):
    folder, _ = runs
    with pytest.raises(UserError, match=r"differ in settings .*model\.depth \(1, 2\).*--by model\.depth"):
        results_table([str(folder)], by=[])
    table = results_table([str(folder)], by=["model.depth"], metrics=["test/acc", "test/loss"], fmt="csv")
    lines = table.splitlines()
    assert lines[0] == "model.depth,n,test/acc_mean,test/acc_std,test/loss_mean,test/loss_std,commit"
    assert [line.split(",")[:2] for line in lines[1:]] == [["1", "2"], ["2", "1"]]


def test_the_same_repetition_twice_is_refused(runs, tmp_path):
    folder, _ = runs
    pipeline.train(compose_config("run_id=a0-again", *TINY, "seed=0", log_dir=tmp_path))  # a rerun of seed 0
    with pytest.raises(UserError, match="several runs of the same repetition"):
        results_table([str(folder / "a0"), str(tmp_path / "runs" / "a0-again")], by=[])


def test_the_command_line_prints_latex_and_fails_clearly(runs):
    folder, _ = runs
    cmd = [sys.executable, "-m", "labformer", "results", str(folder / "a*"), "--metric", "test/acc",
           "--format", "latex"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0 and r"$\pm$" in out.stdout and r"\begin{tabular}" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "labformer", "results", str(folder / "nothing-here")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no such file, folder or glob match" in bad.stderr
