"""Every registered vision backbone on Fashion-MNIST, trained through the real platform
for the same CPU time budget each; test accuracy on the official 10k test set.

Per model: (1) probe its training throughput for a few steps (same task, head, data and
AdamW as the run), (2) set `trainer.max_steps` so the training fits `--budget-seconds`,
so Lightning's `estimated_stepping_batches` ends the cosine schedule exactly at the
budget, (3) `pipeline.train` with logger=csv, no progress bar, one validation at the
last step (on `--val-batches` batches; it picks the checkpoint that is tested), then the
platform's own test of that checkpoint on the 10k test images.

Warm-up: the platform's warm-up is `task.warmup_epochs / trainer.max_epochs` of all
steps, so `trainer.max_epochs=20` (never reached) with warmup_epochs=1 gives a 5% warm-up.

Models too slow for the budget run at a "CPU-sized" width (CPU_SIZED below; the table
prints the exact overrides). Results are merged into a JSON file by model and the
Markdown table is rewritten after every model, so an interrupted run keeps what finished.

    nohup .venv/bin/python benchmarks/vision/fashion_mnist.py > /tmp/fmnist.log 2>&1 &
    .venv/bin/python benchmarks/vision/fashion_mnist.py --models vit_nano,pvt_v2_b0 --budget-seconds 60
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from common import (StepTimer, command_line, compose, extra_callbacks, load_average, load_warning, machine,
                    machine_lines)
from labformer import pipeline, registry
from labformer.builders import build_datamodule, build_task, config_dict

HERE = Path(__file__).resolve().parent
TRAIN_IMAGES = 54_000  # 60k official training images less the 10% validation hold-out

# Overrides that shrink a model to fit a few CPU minutes (chosen from a throughput probe
# on the 2-core benchmark machine; each brings a model to roughly >= 1/4 of vit_nano's speed).
CPU_SIZED: dict[str, list[str]] = {
    "convmixer_256_8": ["model.patch_size=4"],        # 7x7 instead of 14x14 positions
    "pit_ti": ["model.stride=4"],                     # non-overlapping stem: 7x7 tokens, not 13x13
    "swin_tiny": ["model.embed_dim=24"],              # quarter of Swin-T width (registered: half)
    "t2t_vit_7": ["model.embed_dim=128"],
    "t2t_vit_12": ["model.embed_dim=128"],
    "t2t_vit_14": ["model.embed_dim=128", "model.num_heads=4"],
    "tnt_tiny": ["model.embed_dim=96", "model.inner_dim=8"],
    "vit_tiny": ["model.embed_dim=96"],
    "vit_small": ["model.embed_dim=128", "model.num_heads=4"],
}


def base_overrides(args: argparse.Namespace, name: str, log_dir: Path) -> list[str]:
    sizing = [] if args.registered_sizes else CPU_SIZED.get(name, [])
    return ["task=vision", f"model={name}", "data=fashion_mnist", "trainer=cpu", "logger=csv",
            "callbacks.progress_bar=none", "trainer.enable_model_summary=false", f"task.lr={args.lr}",
            f"seed={args.seed}", f"paths.log_dir={log_dir}", *sizing]


def probe(cfg, datamodule, steps: int, warmup: int = 2) -> float:
    """Training samples/s of the task built from `cfg`: forward, loss, backward, AdamW step."""
    task = build_task(cfg, datamodule, config_dict(cfg))
    optimizer = torch.optim.AdamW(task.parameters(), lr=cfg.task.lr, weight_decay=cfg.task.weight_decay)
    task.train()
    ends = []
    for images, labels in datamodule.train_dataloader():
        F.cross_entropy(task(images), labels).backward()
        optimizer.step()
        optimizer.zero_grad()
        ends.append(time.perf_counter())
        if len(ends) == warmup + steps:
            break
    return steps * datamodule.batch_size / (ends[-1] - ends[warmup - 1])


def run_model(args: argparse.Namespace, name: str, datamodule, log_dir: Path) -> dict:
    started, load_before = time.perf_counter(), load_average()
    overrides = base_overrides(args, name, log_dir)
    rate = probe(compose(*overrides), datamodule, args.probe_steps)
    batch = datamodule.batch_size
    steps_per_epoch = math.ceil(TRAIN_IMAGES / batch)
    # --epochs fixes the work instead of the time: results then do not depend on the machine's load.
    max_steps = (math.ceil(args.epochs * steps_per_epoch) if args.epochs
                 else max(10, int(args.budget_seconds * rate / batch)))
    max_epochs = max(20, math.ceil(max_steps / steps_per_epoch) + 1)  # never binding; sets the 5% warm-up
    run = [f"++trainer.max_steps={max_steps}", f"trainer.max_epochs={max_epochs}",
           # validate once, at the last step, on a slice of the validation split
           "++trainer.check_val_every_n_epoch=null", f"++trainer.val_check_interval={max_steps}",
           f"++trainer.limit_val_batches={args.val_batches}", "trainer.num_sanity_val_steps=0",
           f"run_id=fmnist-{name}-{time.strftime('%Y%m%d-%H%M%S')}"]
    timer = StepTimer()
    with extra_callbacks(timer):
        result = pipeline.train(compose(*overrides, *run))
    if not args.keep_runs:
        shutil.rmtree(result.run_dir, ignore_errors=True)
    return {
        "model": name, "overrides": [o for o in overrides if o.startswith("model.")],
        "params": timer.params, "probe_samples_per_sec": rate, "max_steps": max_steps,
        "epochs": max_steps * batch / TRAIN_IMAGES, "steps_run": len(timer.step_ends),
        "train_seconds": timer.step_ends[-1] - timer.fit_start,
        "train_cpu_seconds": timer.cpu_ends[-1] - timer.fit_start_cpu, "val_seconds": timer.val_seconds,
        "test_acc": result.test_metrics.get("test/acc"), "test_acc_top5": result.test_metrics.get("test/acc_top5"),
        "val_acc": result.monitor_value, "total_seconds": time.perf_counter() - started,
        "load_before": load_before, "load_after": load_average(), "date": time.strftime("%Y-%m-%d %H:%M"),
        "budget_seconds": None if args.epochs else args.budget_seconds, "budget_epochs": args.epochs,
        "lr": args.lr, "threads": args.threads,
    }


def fmt(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def write_markdown(args: argparse.Namespace, info: dict, results: dict[str, dict], todo: list[str]) -> None:
    order = registry.list_models(task="vision")
    rows = [results[m] for m in order if m in results]
    done = [r for r in rows if r.get("test_acc") is not None]
    best = max(done, key=lambda r: r["test_acc"]) if done else None
    pending = [m for m in todo if m not in results or results[m].get("date") is None]
    lines = [
        "# Fashion-MNIST: vision backbones at a fixed CPU budget", "",
        "Written by `benchmarks/vision/fashion_mnist.py`; see its docstring for the method.", "",
        "## Settings", "",
        "- Platform run: `pipeline.train` with `task=vision data=fashion_mnist trainer=cpu logger=csv "
        f"callbacks.progress_bar=none task.lr={args.lr}` (AdamW, weight decay 0.05, 5% linear warm-up "
        "then cosine to 0 at `max_steps`), batch 128, 28 px, random crop (2 px) + horizontal flip, "
        "train 54k / val 6k (held out of the official train set) / test = official 10k",
        (f"- Budget: {args.epochs:g} epochs per model (`max_steps = epochs x 422`); samples/s probed over "
         f"{args.probe_steps} steps for the table only" if args.epochs else
         f"- Budget: {args.budget_seconds:g} s of training per model; `max_steps = budget x probed samples/s "
         f"/ 128` ({args.probe_steps} timed steps after 2 warm-up steps)")
        + f"; one validation at the last step on {args.val_batches} batches; the checkpoint it picks is "
        "tested on all 10k test images",
        f"- `torch.set_num_threads({args.threads})`, seed {args.seed}",
        *machine_lines(info), "",
        "Reproduce (from the repository root):", "", "```", command_line(), "```", "",
        "## Results", "",
        "| model | overrides (CPU-sized) | params | probe samples/s | max_steps | epochs | train s | "
        "train CPU s | val s | total s | test acc | test top-5 | load avg before / after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['model']} | {' '.join(r.get('overrides', []))} | failed: {r['error']} "
                         "| | | | | | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {' '.join(r['overrides']) or '(registered size)'} | {r['params'] / 1e6:.2f}M | "
            f"{r['probe_samples_per_sec']:.0f} | {r['max_steps']} | {r['epochs']:.2f} | "
            f"{r['train_seconds']:.0f} | {fmt(r.get('train_cpu_seconds'), '.0f')} | {r['val_seconds']:.0f} | "
            f"{r['total_seconds']:.0f} | "
            f"{fmt(r['test_acc'], '.4f')} | {fmt(r['test_acc_top5'], '.4f')} | "
            f"{r['load_before']} / {r['load_after']} |")
    lines.append("")
    if best:
        verdict = "meets" if best["test_acc"] >= 0.90 else "does NOT meet"
        lines.append(f"Best: **{best['model']}** at {best['test_acc']:.4f} test accuracy, which {verdict} "
                     "the 0.90 target.")
        lines += [f"- {r['model']}: {r['test_acc']:.4f} < 0.90" for r in done if r["test_acc"] < 0.90]
    finished = [r for r in rows if not r.get("error")]
    if finished:
        lines += ["", load_warning(*(r[k] for r in finished for k in ("load_before", "load_after")))]
    if pending:
        lines += ["", f"Partial results: still to run: {', '.join(pending)}."]
    args.out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help="comma-separated registry names (default: all vision)")
    parser.add_argument("--budget-seconds", type=float, default=120.0, help="training time per model")
    parser.add_argument("--epochs", type=float, default=None,
                        help="train this many epochs per model instead of --budget-seconds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3, help="as conf/experiment/fashion_mnist_vit.yaml")
    parser.add_argument("--probe-steps", type=int, default=5)
    parser.add_argument("--val-batches", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--registered-sizes", action="store_true", help="ignore CPU_SIZED overrides")
    parser.add_argument("--keep-runs", action="store_true", help="keep run directories (checkpoints)")
    parser.add_argument("--out", type=Path, default=HERE / "fashion_mnist.md")
    parser.add_argument("--results", type=Path, default=None, help="JSON beside --out by default")
    args = parser.parse_args()
    args.results = args.results or args.out.with_suffix(".json")
    torch.set_num_threads(args.threads)
    models = args.models.split(",") if args.models else registry.list_models(task="vision")
    for name in models:
        registry.get(name, task="vision")  # a typo fails now, not after an hour
    info = machine()
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    log_dir = Path(tempfile.mkdtemp(prefix="labformer-fmnist-"))
    # One DataModule for the probes; each platform run reads its own, as a user's run would.
    datamodule = build_datamodule(compose(*base_overrides(args, models[0], log_dir)))
    datamodule.setup()
    try:
        for name in models:
            print(f"== {name} (load {load_average()})", flush=True)
            try:
                results[name] = run_model(args, name, datamodule, log_dir)
            except Exception as e:  # record and go on: one broken model must not cost the others
                traceback.print_exc()
                results[name] = {"model": name, "error": f"{type(e).__name__}: {str(e)[:200]}",
                                 "overrides": [o for o in base_overrides(args, name, log_dir)
                                               if o.startswith("model.")], "date": time.strftime("%Y-%m-%d %H:%M")}
            print(json.dumps(results[name]), flush=True)
            args.results.write_text(json.dumps(results, indent=1) + "\n")
            write_markdown(args, info, results, models)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    print(f"wrote {args.out} and {args.results}")


if __name__ == "__main__":
    main()
