"""Paper tables (conf/reproduce/): every shipped table composes cell by cell, and a small table runs end
to end through real Hydra multiruns, resumes by skipping finished cells and refuses stale ones."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labformer.errors import UserError
from labformer.results.reproduce import TABLES, expected_config, load_table, log_to_wandb, render
from labformer.results.reproduce import reproduce as reproduce_table

pytestmark = pytest.mark.subprocess

TABLE = """title: Tiny digits
source: none (a test)
note: two depths of vit_nano, one short epoch each
metrics: [test/acc]
base: [logger=csv, trainer.max_epochs=1, trainer.limit_train_batches=2, trainer.limit_val_batches=1,
       trainer.limit_test_batches=2, callbacks.progress_bar=none, trainer.enable_model_summary=false]
repeat: {seed: [0, 1]}
rows:
  depth 1: {overrides: [model.depth=1], paper: {test/acc: 0.5}}
  depth 2: {overrides: [model.depth=2]}
"""


@pytest.mark.parametrize("path", sorted(TABLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_table_composes_each_row(path):
    table = load_table(path.stem)
    assert table.rows and table.metrics and table.repeat_values
    for row in table.rows:
        cfg = expected_config(table, row, table.repeat_values[0], [])
        assert cfg[table.repeat_key.split(".")[0]] is not None
        assert set(row.paper) <= set(table.metrics), f"{row.name}: a paper figure for a metric the table omits"


def reproduce(table: Path, out: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labformer", "reproduce", str(table), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600, env=env)


def test_a_table_runs_resumes_and_renders_from_finished_runs(tmp_path, isolated_env):
    table_file = tmp_path / "tiny.yaml"
    table_file.write_text(TABLE)
    out = tmp_path / "out"
    first = reproduce(table_file, out, isolated_env)
    assert first.returncode == 0, first.stderr[-3000:]
    cells = sorted(out.glob("tiny/*/*/result.json"))
    assert [p.parent.relative_to(out).as_posix() for p in cells] == [
        "tiny/depth_1/seed0", "tiny/depth_1/seed1", "tiny/depth_2/seed0", "tiny/depth_2/seed1"]
    records = [json.loads(p.read_text()) for p in cells]
    assert [r["run_id"] for r in records] == ["tiny-depth_1-seed0", "tiny-depth_1-seed1", "tiny-depth_2-seed0",
                                             "tiny-depth_2-seed1"]
    assert [r["config"]["model"]["depth"] for r in records] == [1, 1, 2, 2]
    rendered = (out / "tiny" / "table.md").read_text()
    row = next(line for line in rendered.splitlines() if line.startswith("| depth 1"))
    accs = [r["test"]["test/acc"] for r in records[:2]]
    assert f"| 2 | {sum(accs) / 2:.4f} ± " in row and "| 0.5 |" in row and "%" in row

    again = reproduce(table_file, out, isolated_env)  # every cell is done: nothing runs, the same table
    assert again.returncode == 0 and "[reproduce]" not in again.stdout
    assert rendered.strip() in again.stdout

    stale = reproduce(table_file, out, isolated_env, "trainer.limit_train_batches=3")
    assert stale.returncode == 2
    assert "finished with another config (trainer.limit_train_batches: ran 2, table asks 3)" in stale.stderr


def test_a_missing_table_names_the_shipped_ones():
    with pytest.raises(UserError, match="the shipped ones: .*cora_gcn"):
        load_table("no_such_table")


def test_render_shows_rows_without_runs(tmp_path):
    table_file = tmp_path / "tiny.yaml"
    table_file.write_text(TABLE)
    assert "| depth 2 | 0 | - | - | - | - |" in render(load_table(str(table_file)), tmp_path)


def test_a_wandb_table_logs_the_rendered_table_in_the_tables_group(tmp_path, monkeypatch):
    # No credentials: offline into the table's folder, like every run of the platform.
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    table_file = tmp_path / "tiny.yaml"
    table_file.write_text(TABLE.replace("logger=csv, ", ""))  # the default tracker, W&B
    table = load_table(str(table_file))
    folder = log_to_wandb(table, tmp_path / "out", [])
    assert folder is not None and folder.parent.name == "wandb" and folder.name.startswith("offline-run-")
    assert folder.is_relative_to(tmp_path / "out" / "tiny") and list(folder.glob("*.wandb"))
    assert log_to_wandb(table, tmp_path / "out", ["logger=csv"]) is None  # another tracker: nothing to log


def test_rows_picks_the_rows_to_run_and_names_the_valid_ones(tmp_path, capsys):
    table_file = tmp_path / "tiny.yaml"
    table_file.write_text(TABLE)
    rendered = reproduce_table(str(table_file), [], tmp_path, dry_run=True, rows=["depth 2"])
    said = capsys.readouterr().out
    assert "would run depth 2" in said and "would run depth 1" not in said
    assert "| depth 1 | 0 |" in rendered  # every row is still rendered
    with pytest.raises(UserError, match=r"--row 'depth 3': no such row in table tiny\. Fix: one of 'depth 1'"):
        reproduce_table(str(table_file), [], tmp_path, dry_run=True, rows=["depth 3"])
