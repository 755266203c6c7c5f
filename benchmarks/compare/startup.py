"""Time to first training step, whole-run wall time and `python -m labformer list`, side by side.

- platform: `python train.py` with its defaults (vision, vit_nano on digits, W&B offline, progress
  bar, checkpointing, test after fitting), `trainer.max_steps=--steps`, HOME and the run folder in a
  scratch directory;
- reference: benchmarks/compare/bare_lightning.py, the same model and data as a bare Lightning script;
- list: `python -m labformer list`.
Each is a fresh process; rounds alternate them (platform, reference, list, platform, ...). Time to
first step = from starting the process to reading its "first training step done" line on stderr;
exit = from the platform's "run ... finished" line to the process's end.

    .venv/bin/python benchmarks/compare/startup.py [--rounds 3] [--steps 20]

Writes benchmarks/compare/startup.md and appends a JSON line to startup.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "vision"))
from common import command_line, load_average, load_warning, machine, machine_lines  # noqa: E402

MARK_FIRST, MARK_DONE = "first training step done", "finished"


def timed(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Seconds from start to the first-step line, to the finished line, and to the process's exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: dict[str, float] = {}
    tail: list[str] = []
    for line in proc.stdout:  # Hydra logs to stdout, the reference prints to stderr: both are read
        now = time.perf_counter() - start
        tail = (tail + [line])[-20:]
        if MARK_FIRST in line and "first" not in marks:
            marks["first"] = now
        if "run " in line and MARK_DONE in line:
            marks["finished"] = now
    proc.wait()
    marks["total"] = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{''.join(tail)}")
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE / "startup.md")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="labformer-startup-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(scratch / "home"), OMP_NUM_THREADS="1")
    (scratch / "home").mkdir()
    python = sys.executable
    sides = {
        "platform": lambda r: [python, "train.py", f"trainer.max_steps={args.steps}", f"run_id=startup{r}",
                               f"paths.log_dir={scratch / 'logs'}"],
        "reference": lambda r: [python, str(HERE / "bare_lightning.py"), str(args.steps)],
        "list": lambda r: [python, "-m", "labformer", "list"],
    }
    info, start = machine(), load_average()
    rows = []
    try:
        for r in range(1, args.rounds + 1):
            for side, cmd in sides.items():
                load = load_average()
                marks = timed(cmd(r), env)
                rows.append({"round": r, "side": side, "load": load, **marks})
                print(f"round {r} {side}: {marks}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def med(side: str, key: str) -> float:
        return statistics.median(x[key] for x in rows if x["side"] == side)

    first_p, first_r = med("platform", "first"), med("reference", "first")
    summary = {"first_step_platform_s": first_p, "first_step_reference_s": first_r,
               "first_step_gap_s": first_p - first_r, "run_platform_s": med("platform", "total"),
               "run_reference_s": med("reference", "total"), "list_s": med("list", "total"),
               "exit_platform_s": statistics.median(x["total"] - x["finished"] for x in rows
                                                    if x["side"] == "platform")}
    lines = ["# Start-up: time to first step and `labformer list`", "",
             "Written by `benchmarks/compare/startup.py` (method in its docstring).", "",
             *machine_lines(info), f"- Load average (1/5/15 min) at start: {start}; at end: {load_average()}", "",
             "Reproduce:", "", "```", command_line(), "```", "",
             "| | platform (`python train.py`) | bare Lightning script | platform - reference | target |",
             "|---|---|---|---|---|",
             f"| time to first step (s) | {first_p:.2f} | {first_r:.2f} | **{first_p - first_r:+.2f}** | <= +3 s "
             f"({'met' if first_p - first_r <= 3 else 'NOT met'}) |",
             f"| whole run, {args.steps} steps + test (s) | {summary['run_platform_s']:.2f} | "
             f"{summary['run_reference_s']:.2f} | {summary['run_platform_s'] - summary['run_reference_s']:+.2f} | |",
             f"| from 'run finished' to process exit (s) | {summary['exit_platform_s']:.2f} | | | |",
             f"| `python -m labformer list` (s) | {summary['list_s']:.2f} | | | < 5 s "
             f"({'met' if summary['list_s'] < 5 else 'NOT met'}) |", "",
             "Round 1 starts with an empty registry cache (HOME is a fresh folder: a new install, or any edit "
             "of the package, rebuilds it): there the platform's first step took "
             f"{rows[0].get('first', float('nan')):.2f} s and `list` {rows[2]['total']:.2f} s (it counts every "
             "backbone's parameters once).", "",
             "Medians over rounds. Per round:", "", "| round | side | first step (s) | total (s) | load before |",
             "|---|---|---|---|---|"]
    lines += [f"| {x['round']} | {x['side']} | {x.get('first', float('nan')):.2f} | {x['total']:.2f} | {x['load']} |"
              for x in rows]
    warning = load_warning(start, *(x["load"] for x in rows))
    args.out.write_text("\n".join(lines + ["", warning] if warning else lines) + "\n")
    with open(HERE / "startup.jsonl", "a") as f:
        f.write(json.dumps({"command": command_line(), "code": info["code"], "date": info["date"], **summary,
                            "rows": rows}) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
