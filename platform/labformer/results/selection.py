"""Model selection inside a reproduce table (Errica et al.'s protocol): the table's rows are grid
points, and for each repetition (fold) the row whose run has the best *validation* monitor is
picked; its *test* metrics form the selected row. The test split never takes part in the choice.

    select: {name: "GIN, selected per fold", rows: all, paper: {test/acc: 0.733}}

A repetition counts only when every candidate row has finished it (a choice among a partial grid
would be biased towards the rows that ran); the rendered row says how many are complete.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labformer.errors import UserError


@dataclass
class Selection:
    name: str
    rows: list[str]  # the candidate rows' names
    paper: dict[str, float] = field(default_factory=dict)


def parse_selection(raw: Any, row_names: list[str], path: Path) -> Selection | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or "name" not in raw:
        raise UserError(f"{path}: select needs a name, e.g. select: {{name: selected per fold, rows: all}}")
    rows = row_names if raw.get("rows", "all") == "all" else list(raw["rows"])
    unknown = [r for r in rows if r not in row_names]
    if unknown or len(rows) < 2:
        raise UserError(f"{path}: select.rows must name at least two of the table's rows ({', '.join(row_names)}); "
                        f"unknown: {', '.join(unknown) or '-'}")
    return Selection(raw["name"], rows, dict(raw.get("paper") or {}))


def best_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The record with the best validation monitor (min or max as its run's task.mode says)."""
    monitors = {r["monitor"]["name"] for r in records}
    modes = {r["config"]["task"]["mode"] for r in records}
    if len(monitors) != 1 or len(modes) != 1:
        raise UserError(f"select compares runs by their validation monitor, but the candidates use {sorted(monitors)} "
                        f"({sorted(modes)}). Fix: give every row the same task.monitor and task.mode")
    if any(r["monitor"].get("best") is None for r in records):
        raise UserError("select: a candidate run recorded no best validation value; rerun it")
    pick = min if modes == {"min"} else max
    return pick(records, key=lambda r: r["monitor"]["best"])


def selected_records(cells: dict[str, dict[Any, Path]], selection: Selection,
                     repeat_values: list[Any]) -> list[dict[str, Any]]:
    """Per complete repetition, the chosen row's record. cells: row name -> {repetition value: result.json}."""
    chosen = []
    for value in repeat_values:
        paths = [cells.get(row, {}).get(value) for row in selection.rows]
        if all(p is not None for p in paths):
            records = [json.loads(p.read_text()) for p in paths]
            chosen.append(best_record(records))
    return chosen
