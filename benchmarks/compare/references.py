"""Per-step time side by side with the reference implementations, run unchanged from their own repositories.

- nanogpt: nanoGPT's `train.py` with its tiny-shakespeare character config at the CPU recipe
  (4 layers, 4 heads, width 128, context 64, batch 12, no dropout, no compile) against
  `experiment=shakespeare_char`. Reference step = the `time ...ms` nanoGPT prints for each iteration.
- itransformer: thuml/iTransformer's `run.py` with its ETTh1 96->96 script's settings (2 layers,
  d_model 256, batch 32, lr 1e-4), one epoch, against `experiment=etth1_itransformer`. Reference step
  = its `speed: ...s/iter` line over iterations 101-200; the platform's mean over the same steps.

The platform runs in this process with the defaults a user gets (progress bar, W&B offline into a
scratch folder, checkpointing); both sides use one torch thread and alternate within each round.

Setup (the references are never copied into this repository): check each out from its repository,
e.g. `git --git-dir=<mirror of karpathy/nanoGPT> archive HEAD | tar -x -C /tmp/refs/nanogpt`, copy
tiny-shakespeare's input.txt into nanogpt/data/shakespeare_char/ and run its prepare.py; install what
they import beyond this venv into a folder of their own (`pip install --target /tmp/refs/site
pandas==2.2.3 einops reformer_pytorch requests`, then delete the torch and numpy it pulls in), and:

    OMP_NUM_THREADS=1 LABFORMER_DATA_DIR=../shared/data .venv/bin/python benchmarks/compare/references.py \\
        --nanogpt /tmp/refs/nanogpt --itransformer /tmp/refs/itr --ref-pythonpath /tmp/refs/site

Writes benchmarks/compare/references.md and appends a JSON line to references.jsonl.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from isolate import scratch  # noqa: E402  (first: before wandb or labformer are imported)

SCRATCH = scratch("labformer-references-")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from common import (StepTimer, command_line, compose, extra_callbacks, load_average, load_warning,  # noqa: E402
                    machine, machine_lines)
from labformer import pipeline  # noqa: E402

HERE = Path(__file__).resolve().parent
NANOGPT_STEPS, ITRANSFORMER_STEPS = 150, 264


def reference(cmd: list[str], cwd: Path, pythonpath: str, pattern: str) -> list[float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return [float(x) for x in re.findall(pattern, out.stdout)]


def nanogpt_reference(args: argparse.Namespace) -> float:
    times = reference([sys.executable, "train.py", "config/train_shakespeare_char.py", "--device=cpu",
                       "--compile=False",
                       "--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4",
                       "--n_head=4", "--n_embd=128", f"--max_iters={NANOGPT_STEPS}", "--lr_decay_iters=2000",
                       "--dropout=0.0", "--eval_interval=100000", f"--out_dir={SCRATCH / 'nanogpt-out'}"],
                      args.nanogpt, args.ref_pythonpath, r"iter \d+: loss [\d.]+, time ([\d.]+)ms")
    return statistics.median(times[10:])  # ms; the first iterations warm up


def itransformer_reference(args: argparse.Namespace) -> float:
    data = Path(os.environ.get("LABFORMER_DATA_DIR", "data")) / "ett"
    speeds = reference([sys.executable, "-u", "run.py", "--is_training", "1", "--root_path", f"{data}/",
                        "--data_path", "ETTh1.csv", "--model_id", "ETTh1_96_96", "--model", "iTransformer", "--data",
                        "ETTh1", "--features", "M", "--seq_len", "96", "--pred_len", "96", "--e_layers", "2",
                        "--enc_in", "7", "--dec_in", "7", "--c_out", "7", "--des", "Exp", "--d_model", "256",
                        "--d_ff", "256", "--itr", "1", "--train_epochs", "1", "--use_gpu", "False",
                        "--checkpoints", str(SCRATCH / "itr-checkpoints")],
                       args.itransformer, args.ref_pythonpath, r"speed: ([\d.]+)s/iter")
    return 1000 * speeds[1]  # ms per iteration over iterations 101-200


def platform(overrides: list[str], steps: int, round_: int) -> list[float]:
    cfg = compose(*overrides, "trainer=cpu", "logger=wandb", "logger.offline=true", "test=false",
                  f"++trainer.max_steps={steps}", f"run_id=ref-{round_}-{time.time_ns()}",
                  f"paths.log_dir={SCRATCH / 'logs'}")
    timer = StepTimer()
    with extra_callbacks(timer):
        pipeline.train(cfg)
    return [b - a for a, b in zip(timer.step_ends, timer.step_ends[1:])]


def nanogpt_platform(round_: int) -> float:
    steps = platform(["task=lm", "experiment=shakespeare_char", "task.sample_tokens=0",
                      f"data.cache_dir={SCRATCH / 'cache'}"], NANOGPT_STEPS + 1, round_)
    return 1000 * statistics.median(steps[10:])


def itransformer_platform(round_: int) -> float:
    steps = platform(["task=timeseries", "experiment=etth1_itransformer"], ITRANSFORMER_STEPS, round_)
    return 1000 * statistics.mean(steps[100:200])  # the intervals ending at steps 101..200, as the reference's


CASES = {"nanogpt": (nanogpt_platform, nanogpt_reference), "itransformer": (itransformer_platform,
                                                                            itransformer_reference)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", type=Path, required=True)
    parser.add_argument("--itransformer", type=Path, required=True)
    parser.add_argument("--ref-pythonpath", default="")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "references.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    info, start = machine(), load_average()
    rows = []
    try:
        for r in range(1, args.rounds + 1):
            for case in args.cases:
                mine, theirs = CASES[case]
                for side, run in (("platform", lambda: mine(r)), ("reference", lambda: theirs(args))):
                    load = load_average()
                    rows.append({"case": case, "round": r, "side": side, "ms": run(), "load": load})
                    print(f"{case} round {r} {side}: {rows[-1]['ms']:.2f} ms/step (load {load})", flush=True)
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    lines = ["# Per-step time: platform vs the reference implementations", "",
             "Written by `benchmarks/compare/references.py` (method and setup in its docstring).", "",
             *machine_lines(info), f"- Load average (1/5/15 min) at start: {start}; at end: {load_average()}", "",
             "Reproduce:", "", "```", f"OMP_NUM_THREADS=1 {command_line()}", "```", "",
             "| case | platform ms/step | reference ms/step | platform / reference |", "|---|---|---|---|"]
    summary = {}
    for case in args.cases:
        med = {s: statistics.median(x["ms"] for x in rows if x["case"] == case and x["side"] == s)
               for s in ("platform", "reference")}
        summary[case] = med["platform"] / med["reference"]
        lines.append(f"| {case} | {med['platform']:.2f} | {med['reference']:.2f} | **{summary[case]:.2f}** |")
    lines += ["", "| case | round | side | ms/step | load before |", "|---|---|---|---|---|"]
    lines += [f"| {x['case']} | {x['round']} | {x['side']} | {x['ms']:.2f} | {x['load']} |" for x in rows]
    warning = load_warning(start, *(x["load"] for x in rows))
    args.out.write_text("\n".join(lines + ["", warning] if warning else lines) + "\n")
    with open(HERE / "references.jsonl", "a") as f:
        f.write(json.dumps({"command": command_line(), "code": info["code"], "date": info["date"],
                            "ratios": summary, "rows": rows}) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
