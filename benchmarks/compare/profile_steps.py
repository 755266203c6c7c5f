"""Where a training step's time goes: cProfile over the steady state of the default run.

`python train.py`'s run (vit_nano on digits, W&B offline, progress bar, checkpointing), profiled from
step --start to step --stop (after start-up, before the test), one torch thread. Writes the top entries
by own time and by cumulative time to --out, with the code version, so a profile before a change and
one after it can be read side by side (run it from a checkout of each commit).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compare/profile_steps.py --out benchmarks/compare/profile_after.md
"""
from __future__ import annotations

import sys
from pathlib import Path

from isolate import scratch  # noqa: E402  (first: before wandb or labformer are imported)

SCRATCH = scratch("labformer-profile-")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

import lightning as L  # noqa: E402
import torch  # noqa: E402

from common import command_line, compose, extra_callbacks, machine, machine_lines  # noqa: E402
from labformer import pipeline  # noqa: E402


class Window(L.Callback):
    """Profiles the steps between `start` and `stop` (counted at the ends of training steps)."""

    def __init__(self, profile: cProfile.Profile, start: int, stop: int) -> None:
        self.profile, self.start, self.stop, self.seconds = profile, start, stop, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.start:
            self.seconds = time.perf_counter()
            self.profile.enable()
        elif trainer.global_step == self.stop:
            self.profile.disable()
            self.seconds = time.perf_counter() - self.seconds


def table(stats: pstats.Stats, key: str, top: int) -> list[str]:
    out = io.StringIO()
    stats.stream = out
    stats.sort_stats(key).print_stats(top)
    rows = [line for line in out.getvalue().splitlines()
            if line.strip()[:1].isdigit() and "function calls" not in line and len(line.split(None, 5)) == 6]
    lines = ["| calls | own s | cumulative s | function |", "|---|---|---|---|"]
    for row in rows:
        parts = row.split(None, 5)
        where = parts[5].replace(str(Path(sys.prefix)), "<venv>").replace("|", "/")
        lines.append(f"| {parts[0]} | {parts[1]} | {parts[3]} | `{where[-110:]}` |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=int, default=50)
    parser.add_argument("--stop", type=int, default=350)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("overrides", nargs="*", help="a case other than the default run, e.g. task=vision model=mlp "
                                                     "data=digits (steps.py's mlp case)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    profile = cProfile.Profile()
    window = Window(profile, args.start, args.stop)
    cfg = compose(*args.overrides, "trainer=cpu", "logger=wandb", "logger.offline=true", "test=false",
                  f"++trainer.max_steps={args.stop + 1}", f"run_id=profile-{time.time_ns()}",
                  f"paths.log_dir={SCRATCH / 'logs'}")
    try:
        with extra_callbacks(window):
            pipeline.train(cfg)
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    steps = args.stop - args.start
    stats = pstats.Stats(profile)
    case = f"`{' '.join(args.overrides)}`" if args.overrides else "the default run"
    lines = [f"# Profile of {case}: steps {args.start + 1}..{args.stop}", "",
             "Written by `benchmarks/compare/profile_steps.py` (method in its docstring).", "",
             *machine_lines(machine()),
             f"- {steps} steps in {window.seconds:.2f} s under the profiler ({1000 * window.seconds / steps:.2f} ms "
             "per step; the profiler slows Python-heavy code most)", "",
             "Reproduce:", "", "```", f"OMP_NUM_THREADS=1 {command_line()}", "```", "",
             f"## Top {args.top} by own time", "", *table(stats, "tottime", args.top), "",
             f"## Top {args.top} by cumulative time", "", *table(stats, "cumulative", args.top), ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
