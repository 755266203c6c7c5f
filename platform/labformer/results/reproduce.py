"""A paper's table as a file, run and rendered: `python -m labformer reproduce <table> [overrides]`.

`conf/reproduce/<table>.yaml` (or any path) declares the rows (each a list of overrides and the
paper's figures), what they share (`base`), the repetition axis (`repeat: {seed: [0, 1, 2]}`) and
the metrics. An override that restates what its row's config holds without it (a code default, a preset's
value) fails tests/test_configs.py unless its key is listed in the optional `pinned: [model.hidden,
data.horizon]` (the paper's recipe written out on purpose, kept if a default moves; the keys a `select:`
grid varies are exempt); a pinned key that no override of the table sets is refused. Each row runs
as one ordinary Hydra multirun over its missing repetitions, so `hydra/launcher=slurm` (or any
launcher) runs it on a cluster; every cell has a fixed folder `<out>/<table>/<row>/<key><value>`
and a fixed run id, so a relaunch skips finished cells and resumes interrupted ones. A finished
cell whose recorded config is not what the table asks for now is refused, naming the settings that
differ. The rendered table gives mean +- std over the repetitions, the number of runs, the paper's
figure and the relative gap.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from labformer import CONF_DIR
from labformer.errors import UserError
from labformer.results.aggregate import Cell, load_records, summary
from labformer.results.record import flatten, is_identity
from labformer.results.selection import Selection, parse_selection, selected_records

TABLES = CONF_DIR / "reproduce"


@dataclass
class Row:
    name: str
    overrides: list[str]
    paper: dict[str, float] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name).strip("_")


@dataclass
class Table:
    name: str
    title: str
    source: str
    metrics: list[str]
    base: list[str]
    repeat_key: str
    repeat_values: list[Any]
    rows: list[Row]
    note: str = ""
    selection: Selection | None = None  # model selection per repetition over the rows (results/selection.py)
    pinned: list[str] = field(default_factory=list)  # keys whose restating overrides are deliberate

    def cell_prefix(self) -> str:
        return self.repeat_key.split(".")[-1]  # seed0, split3, fold7


def load_table(name_or_path: str) -> Table:
    path = Path(name_or_path)
    if not path.suffix:
        path = TABLES / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in TABLES.glob("*.yaml"))
        raise UserError(f"no reproduction table {name_or_path} ({path}); the shipped ones: {', '.join(known)}")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as e:  # YAML syntax (e.g. an unquoted ': ' inside a note)
        raise UserError(f"{path} is not a valid table file: {type(e).__name__}: {e}".splitlines()[0] +
                        " (quote text that contains ': ' or '#')") from None
    missing = [k for k in ("title", "source", "metrics", "rows", "repeat") if k not in raw]
    if missing or not isinstance(raw.get("repeat"), dict) or len(raw["repeat"]) != 1:
        raise UserError(f"{path}: a table needs title, source, metrics, rows and repeat (one key, e.g. "
                        f"repeat: {{seed: [0, 1, 2]}}); missing or malformed: {', '.join(missing) or 'repeat'}")
    (key, values), = raw["repeat"].items()
    rows = [Row(name, list(spec.get("overrides", [])), dict(spec.get("paper") or {}))
            for name, spec in raw["rows"].items()]
    selection = parse_selection(raw.get("select"), [r.name for r in rows], path)
    base = list(raw.get("base", []))
    pinned = raw.get("pinned") or []
    if not isinstance(pinned, list) or not all(isinstance(k, str) for k in pinned):
        raise UserError(f"{path}: pinned must be a list of dotted keys, e.g. pinned: [model.hidden, data.horizon]")
    set_keys = {override_key(o) for o in [*base, *(o for r in rows for o in r.overrides)]}
    unset = [k for k in pinned if k not in set_keys]
    if unset:
        raise UserError(f"{path}: pinned names {', '.join(unset)}, which no override of the table sets; "
                        f"remove {'them' if len(unset) > 1 else 'it'} from pinned")
    return Table(path.stem, raw["title"], raw["source"], list(raw["metrics"]), base, key,
                 list(values), rows, raw.get("note", ""), selection, list(pinned))


def override_key(override: str) -> str:
    """The key (or config group) an override sets: `+model.ffn_kwargs.k=1` -> model.ffn_kwargs.k."""
    return override.split("=", 1)[0].lstrip("+~")


def cell_overrides(table: Table, row: Row, extra: list[str]) -> list[str]:
    return [*table.base, *row.overrides, *extra]


def expected_config(table: Table, row: Row, value: Any, extra: list[str]) -> dict[str, Any]:
    from labformer.config_store import compose_config

    cfg = compose_config(*cell_overrides(table, row, extra), f"{table.repeat_key}={value}")
    return OmegaConf.to_container(cfg, resolve=True)


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    # Identity settings and the monitor (a run may settle it from its data) do not make a different cell.
    return {k: v for k, v in flatten(config).items()
            if not is_identity(k) and k not in ("task.monitor", "task.mode") and not k.startswith("hydra")}


def cell_status(table: Table, row: Row, value: Any, out: Path, extra: list[str]) -> tuple[str, Path]:
    """("done" | "todo", cell folder); raises when a finished cell was run with another config."""
    folder = out / table.name / row.folder / f"{table.cell_prefix()}{value}"
    record_path = folder / "result.json"
    if not record_path.is_file():
        return "todo", folder
    recorded = _comparable(json.loads(record_path.read_text())["config"])
    wanted = _comparable(expected_config(table, row, value, extra))
    # A setting the record does not know was added to the code after it ran; new settings default to the
    # old behaviour (a project rule), so only settings both know, or the record alone knows, can differ.
    differ = sorted(k for k in recorded if recorded[k] != wanted.get(k))
    if differ:
        shown = "; ".join(f"{k}: ran {recorded.get(k)!r}, table asks {wanted.get(k)!r}" for k in differ[:6])
        raise UserError(f"cell {row.name} {table.repeat_key}={value} in {folder} finished with another config "
                        f"({shown}). Move or delete that folder to rerun it, or use another --out")
    return "done", folder


def run_row(table: Table, row: Row, values: list[Any], out: Path, extra: list[str]) -> None:
    """One Hydra multirun over the missing repetitions of `row` (train.py in a child process)."""
    sweep = out / table.name / row.folder
    key = table.repeat_key
    command = [sys.executable, str(CONF_DIR.parent / "train.py"), "-m", *cell_overrides(table, row, extra),
               f"{key}={','.join(str(v) for v in values)}", f"hydra.sweep.dir={sweep}",
               f"hydra.sweep.subdir={table.cell_prefix()}${{{key}}}",
               f"run_id={table.name}-{row.folder}-{table.cell_prefix()}${{{key}}}"]  # one W&B run per cell
    if not any(o.startswith("logger=") for o in command) or "logger=wandb" in command:
        command.append(f"logger.group={table.name}")  # W&B groups a table's runs
    print(f"[reproduce] {row.name}: {key}={','.join(str(v) for v in values)}", flush=True)
    done = subprocess.run(command, cwd=CONF_DIR.parent)
    if done.returncode != 0:
        raise UserError(f"row {row.name} failed (exit {done.returncode}); its finished cells are kept. Fix the "
                        f"cause and run the same command again to resume. Command: {' '.join(command)}")


def table_rows(table: Table, out: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows): ours (mean +- std, n) beside the paper, and the relative gap of the means."""
    header = ["row", "n", *(f"{m}" for m in table.metrics), *(f"paper {m}" for m in table.metrics), "gap", "commit"]
    rows = []
    for row in table.rows:
        paths = sorted((out / table.name / row.folder).glob("*/result.json"))
        rows.append(row_cells(table, row.name, Cell((row.name,), load_records(paths) if paths else []), row.paper))
    if table.selection is not None:
        rows.append(selected_row(table, out))
    return header, rows


def row_cells(table: Table, name: str, cell: Cell, paper: dict[str, float]) -> list[str]:
    values = {m: cell.values(m) for m in table.metrics}
    gaps = [f"{(sum(values[m]) / len(values[m]) - paper[m]) / paper[m]:+.1%}"
            for m in table.metrics if values[m] and paper.get(m)]
    return [name, str(len(cell.records)), *(summary(values[m]) for m in table.metrics),
            *(f"{paper[m]}" if m in paper else "-" for m in table.metrics),
            " / ".join(gaps) or "-", cell.commits() if cell.records else "-"]


def selected_row(table: Table, out: Path) -> list[str]:
    """The row of the per-repetition choice on validation: its test metrics over the complete repetitions."""
    chosen = table.selection
    folders = {r.name: out / table.name / r.folder for r in table.rows}
    cells = {name: {v: path for v in table.repeat_values
                    if (path := folders[name] / f"{table.cell_prefix()}{v}" / "result.json").is_file()}
             for name in chosen.rows}
    records = selected_records(cells, chosen, table.repeat_values)
    name = f"{chosen.name} ({len(records)} of {len(table.repeat_values)} {table.cell_prefix()}s complete)"
    return row_cells(table, name, Cell((chosen.name,), records), chosen.paper)


def render(table: Table, out: Path) -> str:
    """The table as Markdown, with its title, source and note."""
    header, rows = table_rows(table, out)
    lines = [f"### {table.title}", "", f"Source: {table.source}. Repetitions: {table.repeat_key} "
             f"{table.repeat_values}. {table.note}".rstrip(), "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def log_to_wandb(table: Table, out: Path, extra: list[str]) -> Path | None:
    """When the cells log to W&B: one more run in the table's group holding the rendered table
    (offline into `<out>/<table>/wandb` without credentials, like every run). Returns its folder."""
    logger = expected_config(table, table.rows[0], table.repeat_values[0], extra)["logger"]
    if logger["name"] != "wandb":
        return None
    import wandb

    from labformer.utils.loggers import keep_wandb_in, wandb_has_credentials

    folder = out / table.name
    keep_wandb_in(folder)
    offline = logger["offline"] if logger["offline"] != "auto" else not wandb_has_credentials()
    run = wandb.init(project=logger["project"], entity=logger["entity"], group=table.name, job_type="reproduce",
                     name=f"{table.name}-table", id=f"{table.name}-table", dir=str(folder), resume="allow",
                     mode="offline" if offline else "online", settings=wandb.Settings(silent=True))
    header, rows = table_rows(table, out)
    run.log({"reproduce/table": wandb.Table(columns=header, data=rows)})
    run.finish()
    return Path(run.dir).parent


def reproduce(name: str, extra: list[str], out: Path, dry_run: bool = False, rows: list[str] | None = None) -> str:
    """rows: run only these rows' missing cells (every row is still rendered)."""
    table = load_table(name)
    names = [row.name for row in table.rows]
    unknown = [r for r in rows or [] if r not in names]
    if unknown:
        raise UserError(f"--row {', '.join(map(repr, unknown))}: no such row in table {table.name}. "
                        f"Fix: one of {', '.join(map(repr, names))}")
    for row in table.rows:
        if rows and row.name not in rows:
            continue
        todo = [v for v in table.repeat_values if cell_status(table, row, v, out, extra)[0] == "todo"]
        if todo and not dry_run:
            run_row(table, row, todo, out, extra)
        elif todo:
            print(f"[reproduce] would run {row.name}: {table.repeat_key}={','.join(map(str, todo))}")
    rendered = render(table, out)
    (out / table.name).mkdir(parents=True, exist_ok=True)
    (out / table.name / "table.md").write_text(rendered + "\n")
    if not dry_run:
        log_to_wandb(table, out, extra)
    return rendered

