"""Training-loop overhead: the platform's `pipeline.train` against a plain PyTorch loop.

Both sides train the same ViT-tiny (the registry's `vit_tiny` plus a linear head) on the
same Fashion-MNIST DataLoader (resized to 32 px, batch 128, random crop + flip), built by
the platform's own DataModule. The platform side runs the real config: tqdm progress
bar, W&B logger offline in a throw-away run directory, checkpointing on; validation is
off (limit_val_batches=0) because only training steps are compared.

Timing, identical on both sides: wall time from the end of warm-up step `--warmup` to
the end of step `--warmup + --steps`, so start-up, data reading and the final checkpoint
fall outside the window while every per-step cost (batch fetch and augmentation,
forward, backward, optimiser, logging, progress bar) falls inside. The sides alternate
(platform, plain, platform, ...) in one process so drifting machine load hits both.

    .venv/bin/python benchmarks/vision/overhead.py            # writes benchmarks/vision/overhead.md
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# W&B (and anything else) must not write into the real home directory: point HOME at a
# throw-away folder and drop credentials before wandb can be imported.
SCRATCH = Path(tempfile.mkdtemp(prefix="labformer-overhead-"))
(SCRATCH / "home").mkdir()
os.environ["HOME"] = str(SCRATCH / "home")
for _key in [k for k in os.environ if k.startswith("WANDB_")]:
    del os.environ[_key]

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import (StepTimer, command_line, compose, extra_callbacks, load_average, load_warning,  # noqa: E402
                    machine, machine_lines, window)
from labformer import pipeline, registry  # noqa: E402
from labformer.builders import build_datamodule  # noqa: E402
from labformer.callbacks.throughput import ThroughputMonitor  # noqa: E402


def platform_config(args: argparse.Namespace, run: int):
    return compose(
        "task=vision", "model=vit_tiny", "data=fashion_mnist", "data.img_size=32",
        f"data.batch_size={args.batch_size}", "trainer=cpu", "logger=wandb", "logger.offline=true",
        "callbacks.progress_bar=tqdm", f"++trainer.max_steps={args.warmup + args.steps}",
        "++trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "test=false",
        f"seed={args.seed}", f"run_id=overhead-platform-{run}", f"paths.log_dir={SCRATCH / 'logs'}")


def platform_round(args: argparse.Namespace, run: int) -> dict:
    timer = StepTimer()
    with extra_callbacks(timer) as built:
        pipeline.train(platform_config(args, run))
    wall, cpu = timer.window(args.warmup, args.steps)
    monitor = next(c for c in built if isinstance(c, ThroughputMonitor))
    assert timer.threads == {args.threads}, f"the platform changed torch threads: {timer.threads}"
    return {"wall": wall, "cpu": cpu, "params": timer.params, "in_step": monitor.samples_per_sec}


def plain_round(args: argparse.Namespace, datamodule: L.LightningDataModule, lr: float, wd: float) -> dict:
    L.seed_everything(args.seed, verbose=False)
    backbone = registry.create("vision", "vit_tiny", in_chans=datamodule.in_chans, img_size=datamodule.img_size)
    model = nn.Sequential(backbone, nn.Linear(backbone.num_features, datamodule.num_classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    model.train()
    walls, cpus = [], []
    for images, labels in datamodule.train_dataloader():
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        walls.append(time.perf_counter())
        cpus.append(time.process_time())
        if len(walls) == args.warmup + args.steps:
            break
    wall, cpu = window(walls, cpus, args.warmup, args.steps)
    return {"wall": wall, "cpu": cpu, "params": sum(p.numel() for p in model.parameters()), "in_step": None}


def report(args: argparse.Namespace, info: dict, rows: list[dict], loads: tuple[str, str]) -> str:
    samples = args.steps * args.batch_size
    med = {side: statistics.median(samples / r["wall"] for r in rows if r["side"] == side)
           for side in ("platform", "plain")}
    med_cpu = {side: statistics.median(samples / r["cpu"] for r in rows if r["side"] == side)
               for side in ("platform", "plain")}
    lines = [
        "# Training-loop overhead: platform vs plain PyTorch (ViT-tiny, Fashion-MNIST 32 px)", "",
        "Written by `benchmarks/vision/overhead.py`; see its docstring for the method.", "",
        "## Setup", "",
        f"- Model: registry `vit_tiny` (timm VisionTransformer, patch 4, embed 192, depth 12, heads 3) at "
        f"img_size 32, in_chans 1, + linear head: {rows[0]['params']:,} parameters on both sides",
        f"- Data: Fashion-MNIST train split (54k after the 10% validation hold-out) resized to 32 px, "
        f"batch {args.batch_size}, random crop (2 px) + horizontal flip, num_workers 0: the platform's "
        "DataModule on both sides",
        "- Platform: `pipeline.train` with `task=vision model=vit_tiny data=fashion_mnist data.img_size=32 "
        "trainer=cpu logger=wandb logger.offline=true callbacks.progress_bar=tqdm` (checkpointing on), "
        f"`trainer.max_steps={args.warmup + args.steps} trainer.limit_val_batches=0 "
        "trainer.num_sanity_val_steps=0 test=false`; AdamW (two weight-decay groups) + per-step LR "
        "schedule, torchmetrics accuracy, W&B offline, HOME in a temp dir",
        "- Plain: `model.train(); for x, y in loader: cross_entropy(model(x), y).backward(); "
        "AdamW.step(); zero_grad()`",
        f"- Timing: wall time over steps {args.warmup + 1}..{args.warmup + args.steps} "
        f"({args.steps} steps = {samples} samples) after {args.warmup} warm-up steps, measured at the end "
        "of each step on both sides (platform: a callback's `on_train_batch_end`; plain: after "
        "`zero_grad`). CPU = this process's CPU time over the same window (the W&B service process is "
        "not included)",
        f"- `torch.set_num_threads({args.threads})`; rounds alternate platform, plain, platform, ...",
        *machine_lines(info),
        f"- Load average (1/5/15 min) at start: {loads[0]}; at end: {loads[1]}", "",
        "Reproduce (from the repository root):", "", "```", command_line(), "```", "",
        "## Per round", "",
        "| round | side | window wall (s) | samples/s | CPU (s) | samples/CPU-s | load avg before | "
        "platform in-step samples/s (ThroughputMonitor) |",
        "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        in_step = f"{r['in_step']:.1f}" if r["in_step"] is not None else ""
        lines.append(f"| {r['round']} | {r['side']} | {r['wall']:.1f} | {samples / r['wall']:.1f} | "
                     f"{r['cpu']:.1f} | {samples / r['cpu']:.1f} | {r['load']} | {in_step} |")
    lines += ["", "## Summary", "",
              "| | platform | plain | platform / plain |", "|---|---|---|---|",
              f"| median samples/s (wall) | {med['platform']:.1f} | {med['plain']:.1f} | "
              f"**{med['platform'] / med['plain']:.3f}** |",
              f"| median samples per CPU-second | {med_cpu['platform']:.1f} | {med_cpu['plain']:.1f} | "
              f"{med_cpu['platform'] / med_cpu['plain']:.3f} |", "",
              f"Target: platform / plain >= 0.95 (wall). "
              f"{'Met' if med['platform'] / med['plain'] >= 0.95 else 'NOT met'} in this run.", "",
              load_warning(*loads, *(r["load"] for r in rows)), "",
              "The ThroughputMonitor column is the platform's own `perf/train_samples_per_sec` "
              "(run mean, warm-up steps included, timed from `on_train_batch_start` to "
              "`on_train_batch_end`, so without batch fetching): context only, not the comparison.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="measurements per side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each window")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("overhead.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info, load_start = machine(), load_average()

    cfg = platform_config(args, 0)
    datamodule = build_datamodule(cfg)  # the plain loop's data: same DataModule, same settings
    datamodule.setup()
    rows = []
    try:
        for r in range(1, args.rounds + 1):
            for side in ("platform", "plain"):
                load = load_average()
                result = (platform_round(args, r) if side == "platform"
                          else plain_round(args, datamodule, cfg.task.lr, cfg.task.weight_decay))
                rows.append({"round": r, "side": side, "load": load, **result})
                print(f"round {r} {side}: {args.steps * args.batch_size / result['wall']:.1f} samples/s "
                      f"(load {load})", flush=True)
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    assert len({r["params"] for r in rows}) == 1, "the two sides built different models"
    args.out.write_text(report(args, info, rows, (load_start, load_average())))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
