"""Dense vs mixture-of-experts vs white-box vision backbones on Fashion-MNIST at 32 px, the same
number of epochs each, trained through the real platform.

Per model: total and active parameters (experts a token is not routed to do not count),
training samples/s measured side by side (round-robin: every model's timed steps, then the
next round, `--rounds` rounds; the median is reported), then `pipeline.train` for `--epochs`
epochs (validated once at the end, that checkpoint tested on the official 10k test images).
Each run's `result.json` (config, command, commit, machine, metrics) is kept under
`moe_runs/<model>/`, and for MoE models the expert-load picture of the test pass
(`moe_runs/<model>/expert_load_test.png`, written by the platform's ExpertLoad callback).

All models share one CPU size (width 96, 6 blocks, patch 4: 64 tokens at 32 px), stated in the
table; MoE layers keep their registered expert counts and routing.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vision/moe.py --epochs 1 --threads 1
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import command_line, compose, load_average, machine, machine_lines
from labformer import pipeline
from labformer.builders import build_datamodule, build_task, config_dict
from labformer.layers.moe import active_parameters, collect_aux_losses

HERE = Path(__file__).resolve().parent
TRAIN_IMAGES = 54_000
SIZE = {"vit_tiny": ["model.embed_dim=96", "model.depth=6"], "vit_moe": ["model.embed_dim=96", "model.depth=6"],
        "soft_moe_vit": ["model.embed_dim=96", "model.depth=6"], "widenet": ["model.embed_dim=96", "model.depth=6"],
        "sparse_mlp": ["model.embed_dim=96", "model.num_blocks=6"],
        "crate": ["model.embed_dim=96", "model.depth=6"], "monet": ["model.embed_dim=96", "model.depth=6"]}


def overrides(args: argparse.Namespace, name: str, log_dir: Path) -> list[str]:
    return ["task=vision", f"model={name}", "data=fashion_mnist", "data.img_size=32", "trainer=cpu", "logger=csv",
            "callbacks.progress_bar=none", "trainer.enable_model_summary=false", f"task.lr={args.lr}",
            f"seed={args.seed}", f"paths.log_dir={log_dir}", *SIZE[name]]


def timed_steps(task, optimizer, batches, steps: int) -> float:
    """Samples/s of `steps` training steps (one untimed step first)."""
    task.train()
    ends = []
    for images, labels in batches[:steps + 1]:
        loss = F.cross_entropy(task(images), labels)
        (loss + sum(collect_aux_losses(task.expert_layers()).values())).backward()  # as training_step adds
        optimizer.step()
        optimizer.zero_grad()
        ends.append(time.perf_counter())
    return steps * len(batches[0][0]) / (ends[-1] - ends[0])


def throughput(args, models: list[str], datamodule, log_dir: Path) -> dict[str, float]:
    loader = iter(datamodule.train_dataloader())
    batches = [next(loader) for _ in range(args.probe_steps + 1)]
    built = {}
    for name in models:
        cfg = compose(*overrides(args, name, log_dir))
        task = build_task(cfg, datamodule, config_dict(cfg))
        built[name] = (task, torch.optim.AdamW(task.parameters(), lr=args.lr))
    rates: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(args.rounds):  # A, B, C, ..., A, B, C: load drifts hit every model alike
        for name in models:
            rates[name].append(timed_steps(*built[name], batches, args.probe_steps))
    return {m: statistics.median(r) for m, r in rates.items()}


def train(args, name: str, log_dir: Path) -> dict:
    steps = math.ceil(args.epochs * TRAIN_IMAGES / 128)
    run = [f"++trainer.max_steps={steps}", f"trainer.max_epochs={max(20, math.ceil(args.epochs) + 1)}",
           "++trainer.check_val_every_n_epoch=null", f"++trainer.val_check_interval={steps}",
           f"++trainer.limit_val_batches={args.val_batches}", "trainer.num_sanity_val_steps=0", f"run_id=moe-{name}"]
    started = time.perf_counter()
    result = pipeline.train(compose(*overrides(args, name, log_dir), *run))
    keep = HERE / "moe_runs" / name
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    for file in ("result.json", "expert_load_test.png", "expert_load_test.json"):
        if (result.run_dir / file).exists():
            shutil.copy(result.run_dir / file, keep / file)
    return {"test_acc": result.test_metrics.get("test/acc"), "steps": steps, "seconds": time.perf_counter() - started,
            "record": str(keep.relative_to(HERE) / "result.json")}


def write_markdown(args: argparse.Namespace, rows: dict[str, dict], machine_info: list[str], command: str) -> None:
    dense = rows.get("vit_tiny", {}).get("samples_per_sec")
    lines = ["# Fashion-MNIST: dense, mixture-of-experts and white-box backbones", "",
             f"Written by `benchmarks/vision/moe.py` (see its docstring). {args.epochs:g} epoch(s) each, batch 128, "
             f"32 px, AdamW lr {args.lr}, seed {args.seed}, {args.threads} thread(s); samples/s: median of "
             f"{args.rounds} round-robin rounds of {args.probe_steps} timed steps. Active parameters: those one "
             "token passes through (top-k: k experts; Soft MoE: one expert per slot).", "", *machine_info, "",
             "```", command, "```", "",
             "| model | size | params | active params | train samples/s | vs vit_tiny | test acc | record |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        ratio = f"{r['samples_per_sec'] / dense:.2f}" if dense else "-"
        lines.append(f"| {name} | {' '.join(SIZE[name])} | {r['params'] / 1e6:.2f}M | {r['active'] / 1e6:.2f}M | "
                     f"{r['samples_per_sec']:.0f} | {ratio} | {r['test_acc']:.4f} | `{r['record']}` |")
    args.out.write_text("\n".join(lines + claims(rows, args.epochs)) + "\n")


def claims(rows: dict[str, dict], epochs: float) -> list[str]:
    """The papers' claims, read off this run's rows in direction (seen / not seen), never typed."""
    out = ["", f"## The papers' claims at this budget ({epochs:g} epoch(s), one seed)", ""]
    soft, topk, dense, wide = (rows.get(k) for k in ("soft_moe_vit", "vit_moe", "vit_tiny", "widenet"))
    if soft and topk:
        seen = soft["test_acc"] > topk["test_acc"] and soft["samples_per_sec"] >= topk["samples_per_sec"]
        out.append(f"- Soft MoE beats top-k routing at equal or lower cost (Puigcerver et al.): "
                   f"**{'seen' if seen else 'not seen'}**. Test accuracy {soft['test_acc']:.4f} vs "
                   f"{topk['test_acc']:.4f}, at {soft['samples_per_sec'] / topk['samples_per_sec']:.2f}x top-k's "
                   f"training throughput and {soft['active'] / topk['active']:.2f}x its active parameters.")
    if wide and dense:
        gap = wide["test_acc"] - dense["test_acc"]
        seen = gap >= -0.01 and wide["params"] < dense["params"]
        out.append(f"- WideNet matches ViT with fewer parameters (Xue et al.): **{'seen' if seen else 'not seen'}**. "
                   f"{wide['params'] / dense['params']:.2f}x the parameters, test accuracy {wide['test_acc']:.4f} vs "
                   f"{dense['test_acc']:.4f} ({gap:+.4f}; 'matches' read as within 1 point).")
    out += ["", "Both papers train for hundreds of epochs on ImageNet-scale data; a short CPU run can only check "
            "direction, and one seed of Fashion-MNIST spreads by about half a point. A longer check is "
            "`moe.py --models vit_tiny,vit_moe,soft_moe_vit,widenet --epochs N`."]
    return out


def render_only(args: argparse.Namespace) -> None:
    """Rewrite the table from moe.json, parameters recounted with the current code (the measured columns kept)."""
    rows = json.loads(args.out.with_suffix(".json").read_text())
    log_dir = Path(tempfile.mkdtemp(prefix="labformer-moe-"))
    datamodule = build_datamodule(compose(*overrides(args, next(iter(rows)), log_dir)))
    for name, row in rows.items():
        cfg = compose(*overrides(args, name, log_dir))
        backbone = build_task(cfg, datamodule, config_dict(cfg)).backbone
        row.update(params=sum(p.numel() for p in backbone.parameters()), active=active_parameters(backbone))
    shutil.rmtree(log_dir, ignore_errors=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    old = args.out.read_text().split("```") if args.out.exists() else ["", command_line()]
    notes = [line for line in old[0].splitlines() if line.startswith("- ")]
    write_markdown(args, rows, notes, old[1].strip())  # the measuring run's machine lines and command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(SIZE))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probe-steps", type=int, default=4)
    parser.add_argument("--val-batches", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=HERE / "moe.md")
    parser.add_argument("--render-only", action="store_true", help="rewrite moe.md from moe.json (recount params)")
    args = parser.parse_args()
    if args.render_only:
        return render_only(args)
    torch.set_num_threads(args.threads)
    models = args.models.split(",")
    log_dir = Path(tempfile.mkdtemp(prefix="labformer-moe-"))
    info, load_before = machine(), load_average()
    datamodule = build_datamodule(compose(*overrides(args, models[0], log_dir)))
    datamodule.setup()
    rows = {}
    for name in models:
        cfg = compose(*overrides(args, name, log_dir))
        backbone = build_task(cfg, datamodule, config_dict(cfg)).backbone
        rows[name] = {"params": sum(p.numel() for p in backbone.parameters()), "active": active_parameters(backbone)}
    for name, rate in throughput(args, models, datamodule, log_dir).items():
        rows[name]["samples_per_sec"] = rate
    for name in models:
        print(f"== {name} (load {load_average()})", flush=True)
        rows[name].update(train(args, name, log_dir))
        (args.out.with_suffix(".json")).write_text(json.dumps(rows, indent=1) + "\n")
    shutil.rmtree(log_dir, ignore_errors=True)
    load = f"- load average before / after: {load_before} / {load_average()}"
    write_markdown(args, rows, machine_lines(info) + [load], command_line())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
