"""Model selection in reproduce tables: per fold, the row with the best validation monitor is chosen
and its test metric reported; the test metric never decides; incomplete folds do not count."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from labformer.errors import UserError
from labformer.results.reproduce import load_table, table_rows

TABLE = """title: t
source: s
metrics: [test/acc]
repeat: {data.fold: [0, 1, 2]}
select: {name: chosen, rows: all, paper: {test/acc: 0.5}}
rows:
  a: {overrides: [model.hidden=8]}
  b: {overrides: [model.hidden=16]}
"""


def record(folder: Path, val_loss: float, test_acc: float, monitor: str = "val/loss", mode: str = "min") -> None:
    folder.mkdir(parents=True)
    folder.joinpath("result.json").write_text(json.dumps({
        "config": {"task": {"mode": mode}}, "monitor": {"name": monitor, "best": val_loss},
        "test": {"test/acc": test_acc}, "git": {"commit": "abcdef0123", "dirty": False}}))


def test_each_fold_takes_the_row_with_the_best_validation_and_reports_its_test(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(TABLE)
    out = tmp_path / "out"
    # fold 0: a validates better (0.3 < 0.4) though b tests better: a's 0.6 must be reported
    record(out / "grid" / "a" / "fold0", 0.3, 0.6)
    record(out / "grid" / "b" / "fold0", 0.4, 0.9)
    record(out / "grid" / "a" / "fold1", 0.5, 0.7)
    record(out / "grid" / "b" / "fold1", 0.2, 0.8)  # b chosen: 0.8
    record(out / "grid" / "a" / "fold2", 0.1, 0.1)  # fold 2 lacks b: not counted
    _, rows = table_rows(load_table(str(path)), out)
    chosen = rows[-1]
    assert chosen[0] == "chosen (2 of 3 folds complete)" and chosen[1] == "2"
    assert chosen[2] == "0.7000 ± 0.1414" and chosen[4] == "+40.0%" and chosen[5] == "abcdef01"


def test_selection_refuses_runs_that_monitor_different_things(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(TABLE)
    out = tmp_path / "out"
    record(out / "grid" / "a" / "fold0", 0.3, 0.6)
    record(out / "grid" / "b" / "fold0", 0.9, 0.9, monitor="val/acc", mode="max")
    with pytest.raises(UserError, match="same task.monitor"):
        table_rows(load_table(str(path)), out)


def test_a_selection_over_unknown_rows_names_them(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(TABLE.replace("rows: all", "rows: [a, c]"))
    with pytest.raises(UserError, match="unknown: c"):
        load_table(str(path))
