"""Every attention variant and nGPT at nanoGPT's CPU budget on tiny-shakespeare, side by side.

    LABFORMER_DATA_DIR=../shared/data .venv/bin/python benchmarks/lm/variants.py [--runs softmax ...] [--extra k=v ...]
    .venv/bin/python benchmarks/lm/variants.py --report          # rewrite variants.md from the results

Each run is `python train.py experiment=shakespeare_char <overrides>` in its own process with
one torch thread (two lanes can share a 2-core machine), CSV logger. Recorded per run: the
validation loss after every epoch (250 steps), train tokens/s (mean over epochs, training
batches only), the process's peak RSS and the wall time. Results append to
variants.jsonl; the table in variants.md is rebuilt from all lines.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS, TABLE = HERE / "variants.jsonl", HERE / "variants.md"
# nGPT and the all-attention model have their own block settings: drop the preset's GPT-only keys.
NOT_GPT = ["~model.bias", "~model.norm_kwargs", "~model.dropout"]
LOCAL_KEYS = ("data.cache_dir", "paths.")  # where this machine keeps files: not shown in the table
RUNS: dict[str, list[str]] = {
    "softmax": [],
    "softmax_seed1": ["seed=1"],
    "softmax_seed2": ["seed=2"],
    "sparse_strided": ["model.attention=sparse"],
    "sparse_fixed": ["model.attention=sparse", "+model.attention_kwargs.pattern=fixed"],
    "performer": ["model.attention=performer"],
    "linear_elu": ["model.attention=linear"],
    "linear_transnormer": ["model.attention=linear", "+model.attention_kwargs.feature_map=identity",
                           "+model.attention_kwargs.normalization=rmsnorm"],
    "linear_hedgehog": ["model.attention=linear", "+model.attention_kwargs.feature_map=hedgehog"],
    "persistent_memory": ["model.attention=persistent_memory"],
    "simplicial": ["model.attention=simplicial"],
    "ngpt": ["model=ngpt", *NOT_GPT],
    "all_attention": ["model=all_attention", *NOT_GPT],
}


def read_csv(run_dir: Path) -> tuple[list[float], list[float]]:
    with open(next(run_dir.rglob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    val = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    speed = [float(r["perf/train_tokens_per_sec"]) for r in rows if r.get("perf/train_tokens_per_sec")]
    return val, speed


def run(name: str, extra: list[str], log_dir: Path) -> dict:
    overrides = ["experiment=shakespeare_char", *RUNS[name], *extra, "logger=csv", "callbacks.progress_bar=none",
                 f"run_id={name}", f"paths.log_dir={log_dir}", "test=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start, load = time.time(), os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: nothing blocks while we wait
        proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *overrides], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource usage (peak RSS)
        returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    wall = time.time() - start
    row = {"run": name, "overrides": RUNS[name] + extra, "wall_s": round(wall, 1), "returncode": returncode,
           "load_start": round(load, 2), "load_end": round(os.getloadavg()[0], 2),
           "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "peak_rss_mb": round(usage.ru_maxrss / 1024)}
    if returncode != 0:
        row["error"] = stderr[-1500:]
        return row
    val, speed = read_csv(log_dir / "runs" / name)
    row.update(val_loss=[round(v, 4) for v in val], final_val_loss=round(val[-1], 4),
               tokens_per_sec=round(sum(speed) / len(speed)) if speed else None)
    return row


def report() -> None:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()] if RESULTS.exists() else []
    lines = ["# tiny-shakespeare: attention variants and nGPT at one budget", "",
             "Written by `benchmarks/lm/variants.py` from `variants.jsonl`. nanoGPT's CPU recipe "
             "(`experiment=shakespeare_char`: 4 layers, 4 heads, width 128, context 64, batch 12, 2000 steps, "
             "AdamW lr 1e-3, 100 warm-up steps, cosine to 1e-4, weight decay 0.1, beta2 0.99, clip 1.0), "
             "only the attention (or the model) changed. Validation: the last 10% of the characters, every "
             "token scored once. One torch thread per run; tokens/s is the mean over epochs of training "
             "batches only; peak RSS is the whole process's.", "",
             "| run | overrides | val loss @500 / 1000 / 1500 / 2000 | train tokens/s | peak RSS MB | wall s | load | date |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("returncode"):
            lines.append(f"| {r['run']} | `{' '.join(r['overrides'])}` | failed: {r.get('error', '')[-200:]!r} | | | "
                         f"{r['wall_s']} | | {r['date']} |")
            continue
        v = r["val_loss"]
        shown = " ".join(o for o in r["overrides"] if not o.startswith(LOCAL_KEYS))
        marks = " / ".join(f"{v[i]:.3f}" for i in (1, 3, 5, 7) if i < len(v))
        lines.append(f"| {r['run']} | `{shown or '(preset)'}` | {marks} | {r['tokens_per_sec']} | "
                     f"{r.get('peak_rss_mb')} | {r['wall_s']:.0f} | {r['load_start']:.1f}-{r['load_end']:.1f} | {r['date']} |")
    TABLE.write_text("\n".join(lines) + "\n")
    print(TABLE.read_text())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--report", action="store_true", help="only rewrite variants.md")
    p.add_argument("--log-dir", default=str(REPO / "logs" / "lm_variants"),
                   help="the runs' directories (checkpoints, metrics.csv, samples); a rerun of a name resumes it")
    p.add_argument("--extra", nargs="*", default=[], help="overrides added to every run, e.g. data.cache_dir=...")
    args = p.parse_args()
    if not args.report:
        for name in args.runs:
            row = run(name, args.extra, Path(args.log_dir))
            with open(RESULTS, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps({k: row.get(k) for k in ("run", "final_val_loss", "tokens_per_sec",
                                                      "peak_rss_mb", "wall_s", "error")}), flush=True)
    report()


if __name__ == "__main__":
    main()
