"""Tables from run records: `python -m labformer results <dir|glob|result.json> ... [--by KEYS]`.

Runs are grouped into cells by the `--by` settings; inside a cell they are repetitions, which
may differ only in the repeat keys (seed, data.split, data.fold). Each cell reports the number
of runs and mean +- sample standard deviation of every metric, and the commits the runs come
from. Runs that differ in any other setting are refused, naming the settings and their values,
so a table never averages over a change nobody asked for.
"""
from __future__ import annotations

import glob
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labformer.errors import UserError
from labformer.results.record import REPEAT_KEYS, flatten, is_identity

_MISSING = "<absent>"


def find_records(paths: list[str]) -> list[Path]:
    """Every result.json under the given folders, glob patterns or files (sorted, no duplicates)."""
    found: set[Path] = set()
    for arg in paths:
        matches = [Path(m) for m in glob.glob(arg, recursive=True)] or ([Path(arg)] if Path(arg).exists() else [])
        if not matches:
            raise UserError(f"{arg}: no such file, folder or glob match. Give run directories (e.g. logs/runs/<id>), "
                            "a multirun folder, or their result.json files")
        for match in matches:
            found.update([match] if match.is_file() else match.rglob("result.json"))
    if not found:
        raise UserError(f"no result.json under {', '.join(paths)}: records are written by runs that finished "
                        "(train.py writes <run_dir>/result.json at the end)")
    return sorted(found)


def load_records(paths: list[Path]) -> list[dict[str, Any]]:
    records = []
    for path in paths:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{path} is not a readable run record ({e}); delete it or rerun that run") from None
        if "config" not in record or "test" not in record:
            raise UserError(f"{path} is not a labformer run record (no config or test metrics)")
        records.append({**record, "path": str(path)})
    return records


@dataclass
class Cell:
    key: tuple[Any, ...]
    records: list[dict[str, Any]] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [float(r["test"][metric]) for r in self.records if metric in r["test"]]

    def commits(self) -> str:
        tags = {(r.get("git") or {}).get("commit") or "?" for r in self.records}
        dirty = any((r.get("git") or {}).get("dirty") for r in self.records)
        return ",".join(sorted(t[:8] for t in tags)) + (" (dirty)" if dirty else "")


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def group(records: list[dict[str, Any]], by: list[str], over: tuple[str, ...] = REPEAT_KEYS) -> list[Cell]:
    """Cells of runs equal in every setting but `by` (the rows) and `over` (the repetitions)."""
    flats = [flatten(r["config"]) for r in records]
    keys = sorted({k for f in flats for k in f})
    unknown = [k for k in by if not any(k in f for f in flats)]
    if unknown:
        raise UserError(f"--by {','.join(unknown)}: no run has such a setting; settings look like "
                        f"model.name, data.horizon, task.lr")
    differing = {}
    for key in keys:
        if is_identity(key) or key in by or key in over:
            continue
        seen = {_show(f.get(key, _MISSING)) for f in flats}
        if len(seen) > 1:
            differing[key] = sorted(seen)
    if differing:
        listed = "; ".join(f"{k} ({', '.join(v)})" for k, v in list(differing.items())[:8])
        more = f" and {len(differing) - 8} more" if len(differing) > 8 else ""
        raise UserError(f"these runs differ in settings that are neither grouping keys (--by) nor repetitions "
                        f"({', '.join(over)}): {listed}{more}. Add them to --by (e.g. --by "
                        f"{','.join(list(differing)[:2])}) or aggregate runs of one configuration")
    cells: dict[tuple[Any, ...], Cell] = {}
    repetitions: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for record, flat in zip(records, flats):
        key = tuple(_show(flat.get(k, _MISSING)) for k in by)
        cells.setdefault(key, Cell(key)).records.append(record)
        repetitions.setdefault(key, []).append(tuple(flat.get(k) for k in over))
    for key, cell in cells.items():
        reps = repetitions[key]
        if len(set(reps)) < len(reps):
            raise UserError(f"cell {dict(zip(by, cell.key)) or 'all runs'} holds several runs of the same "
                            f"repetition ({', '.join(over)}): {', '.join(r['path'] for r in cell.records)}. "
                            "Pass each run once (a rerun of a seed is not a new sample)")
    return sorted(cells.values(), key=lambda c: c.key)


def common_metrics(cells: list[Cell]) -> list[str]:
    sets = [set(r["test"]) for c in cells for r in c.records]
    return sorted(set.intersection(*sets)) if sets else []


def summary(values: list[float], digits: int = 4) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def render(cells: list[Cell], by: list[str], metrics: list[str], fmt: str = "md") -> str:
    header = [*by, "n", *metrics, "commit"]
    rows = [[*c.key, str(len(c.records)), *(summary(c.values(m)) for m in metrics), c.commits()] for c in cells]
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    if fmt == "csv":
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*by, "n", *(f"{m}_{s}" for m in metrics for s in ("mean", "std")), "commit"])
        for c in cells:
            stats = []
            for m in metrics:
                v = c.values(m)
                stats += [f"{statistics.mean(v):.6g}" if v else "", f"{statistics.stdev(v):.6g}" if len(v) > 1 else ""]
            writer.writerow([*c.key, len(c.records), *stats, c.commits()])
        return out.getvalue().rstrip("\n")
    if fmt == "latex":
        def tex(s: str) -> str:
            return s.replace("±", r"$\pm$").replace("_", r"\_")

        lines = [r"\begin{tabular}{" + "l" * len(by) + "r" * (len(header) - len(by)) + "}", r"\toprule",
                 " & ".join(tex(h) for h in header) + r" \\", r"\midrule"]
        lines += [" & ".join(tex(v) for v in r) + r" \\" for r in rows]
        return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"])
    raise UserError(f"--format {fmt} is unknown; use md, csv or latex")


def results_table(paths: list[str], by: list[str], metrics: list[str] | None = None, fmt: str = "md",
                  over: tuple[str, ...] = REPEAT_KEYS) -> str:
    cells = group(load_records(find_records(paths)), by, over)
    chosen = metrics or common_metrics(cells)
    if not chosen:
        raise UserError("the runs share no test metric (did they test? test=false runs record none)")
    return render(cells, by, chosen, fmt)
