"""Per-step cost side by side: the platform's default run against a plain loop of the same recipe.

Cases (each side builds the same model on the same data, one torch thread):
- mlp: the registry's `mlp` (2 x 256, GELU) on scikit-learn's digits at 16 px, batch 32, AdamW + the
  per-step cosine schedule: the model costs almost nothing, so this is the platform's own cost per step.
- cora_gcn: `experiment=cora_gcn` (Kipf & Welling's recipe, full batch: one step per epoch, validation
  every epoch) against a plain PyG loop: train step on the 140 training nodes, then the validation loss
  and accuracy, as in the paper's code.
- vit_tiny: the registry's `vit_tiny` (timm) on digits at 32 px (64 patches of 4 px), batch 64.

Sides: `platform` = `pipeline.train` with the config a user gets (progress bar, W&B offline in a scratch
directory, checkpointing and the per-epoch validation on); `plain` = a hand-written loop over the same
DataModule's loader; `lightning` = the bare Lightning floor (a minimal LightningModule, Trainer without
logger, checkpointing or progress bar). The sides alternate within each round (platform, plain,
lightning, platform, ...) so drifting machine load hits all of them. A step's time is the interval
between the ends of consecutive training steps after `--warmup` steps: everything a step costs in a
steady run (batch fetch, forward, backward, optimiser, metrics, logging, progress bar, and at epoch ends
validation and checkpointing). The ratio is platform / plain of the medians over rounds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compare/steps.py [--cases mlp cora_gcn vit_tiny] [--rounds 3]

Writes benchmarks/compare/steps.md and appends one JSON line per case to steps.jsonl.
"""
from __future__ import annotations

from pathlib import Path

from isolate import scratch  # noqa: E402  (first: before wandb or labformer are imported)

SCRATCH = scratch("labformer-compare-")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import (StepTimer, command_line, compose, extra_callbacks, load_average, load_warning,  # noqa: E402
                    machine, machine_lines)
from labformer import pipeline, registry  # noqa: E402
from labformer.builders import build_datamodule  # noqa: E402

HERE = Path(__file__).resolve().parent
CASES = {
    "mlp": dict(overrides=["task=vision", "model=mlp", "data=digits"], steps=300, warmup=10),
    "cora_gcn": dict(overrides=["task=graph", "experiment=cora_gcn"], steps=150, warmup=10),
    "vit_tiny": dict(overrides=["task=vision", "model=vit_tiny", "data=digits", "data.img_size=32",
                                "data.batch_size=64"], steps=20, warmup=3),
}


def intervals(ends: list[float], warmup: int) -> list[float]:
    return [b - a for a, b in zip(ends[warmup:], ends[warmup + 1:])]


def platform_side(case: str, steps: int, round_: int) -> list[float]:
    spec = CASES[case]
    cfg = compose(*spec["overrides"], "trainer=cpu", "logger=wandb", "logger.offline=true", "test=false",
                  f"++trainer.max_steps={steps}", f"run_id={case}-{round_}-{time.time_ns()}",
                  f"paths.log_dir={SCRATCH / 'logs'}")
    timer = StepTimer()
    with extra_callbacks(timer):
        pipeline.train(cfg)
    return timer.step_ends


def cosine_schedule(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    import math

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def vision_parts(case: str):
    cfg = compose(*CASES[case]["overrides"], "trainer=cpu")
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    backbone = registry.create("vision", cfg.model.name, in_chans=datamodule.in_chans, img_size=datamodule.img_size)
    model = nn.Sequential(backbone, nn.Linear(backbone.num_features, datamodule.num_classes))
    return cfg, datamodule, model


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    params = list(model.parameters())
    return torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=lr)


def plain_vision(case: str, steps: int) -> list[float]:
    cfg, datamodule, model = vision_parts(case)
    optimizer = adamw(model, cfg.task.lr, cfg.task.weight_decay)
    schedule = cosine_schedule(optimizer, steps, len(datamodule.train_dataloader()))
    ends: list[float] = []
    model.train()
    while len(ends) < steps:
        for images, labels in datamodule.train_dataloader():
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            ends.append(time.perf_counter())
            if len(ends) == steps:
                break
    return ends


class BareModule(L.LightningModule):
    def __init__(self, model: nn.Module, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.model, self.lr, self.weight_decay = model, lr, weight_decay

    def training_step(self, batch, batch_idx):
        images, labels = batch
        return F.cross_entropy(self.model(images), labels)

    def configure_optimizers(self):
        return adamw(self.model, self.lr, self.weight_decay)


def lightning_vision(case: str, steps: int) -> list[float]:
    cfg, datamodule, model = vision_parts(case)
    timer = StepTimer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    trainer.fit(BareModule(model, cfg.task.lr, cfg.task.weight_decay), train_dataloaders=datamodule.train_dataloader())
    return timer.step_ends


def cora_parts():
    cfg = compose(*CASES["cora_gcn"]["overrides"], "trainer=cpu")
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    data = next(iter(datamodule.train_dataloader()))
    from torch_geometric.nn.models import GCN

    m = cfg.model
    model = GCN(data.num_features, m.hidden, m.num_layers, out_channels=m.out_dim, dropout=m.dropout)
    return cfg, datamodule, data, model


def plain_cora(steps: int) -> list[float]:
    cfg, datamodule, train, model = cora_parts()
    val = next(iter(datamodule.val_dataloader()))  # the same graph with the validation mask
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.task.lr, weight_decay=cfg.task.weight_decay)
    ends: list[float] = []
    best = float("inf")
    for _ in range(steps):  # the paper's loop: the graph stays in memory, one full-batch step per epoch
        model.train()
        x = F.dropout(train.x, cfg.model.in_dropout, True)
        loss = F.cross_entropy(model(x, train.edge_index)[train.mask], train.y[train.mask])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(val.x, val.edge_index)[val.mask]
            val_loss = F.cross_entropy(logits, val.y[val.mask]).item()
            _ = (logits.argmax(-1) == val.y[val.mask]).float().mean().item()
        best = min(best, val_loss)
        ends.append(time.perf_counter())
    return ends


class BareCora(L.LightningModule):
    """The plain loop's step and validation inside Lightning's loops: Lightning's own cost per epoch."""

    def __init__(self, model: nn.Module, cfg, train, val) -> None:
        super().__init__()
        self.model, self.cfg, self.graph, self.val_graph = model, cfg, train, val

    def training_step(self, batch, batch_idx):
        g = self.graph
        x = F.dropout(g.x, self.cfg.model.in_dropout, True)
        return F.cross_entropy(self.model(x, g.edge_index)[g.mask], g.y[g.mask])

    def validation_step(self, batch, batch_idx):
        g = self.val_graph
        logits = self.model(g.x, g.edge_index)[g.mask]
        self.log("val_loss", F.cross_entropy(logits, g.y[g.mask]), batch_size=1)

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.cfg.task.lr, weight_decay=self.cfg.task.weight_decay)


def lightning_cora(steps: int) -> list[float]:
    cfg, datamodule, train, model = cora_parts()
    val = next(iter(datamodule.val_dataloader()))
    one_item = torch.utils.data.DataLoader([0], batch_size=None)  # the graph lives in the module, as in the plain loop
    timer = StepTimer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[timer])
    trainer.fit(BareCora(model, cfg, train, val), train_dataloaders=one_item, val_dataloaders=one_item)
    return timer.step_ends


def run_side(case: str, side: str, steps: int, round_: int) -> list[float]:
    if side == "platform":
        return platform_side(case, steps, round_)
    if case == "cora_gcn":
        return plain_cora(steps) if side == "plain" else lightning_cora(steps)
    return plain_vision(case, steps) if side == "plain" else lightning_vision(case, steps)


def sides_of(case: str) -> tuple[str, ...]:
    return ("platform", "plain", "lightning")


def measure(case: str, rounds: int) -> dict:
    spec = CASES[case]
    rows = []
    for r in range(1, rounds + 1):
        for side in sides_of(case):
            load = load_average()
            steps = intervals(run_side(case, side, spec["steps"] + spec["warmup"] + 1, r), spec["warmup"])
            q = statistics.quantiles(steps, n=4)
            rows.append({"round": r, "side": side, "median_ms": 1000 * statistics.median(steps),
                         "p25_ms": 1000 * q[0], "p75_ms": 1000 * q[2], "steps": len(steps), "load": load})
            print(f"{case} round {r} {side}: {rows[-1]['median_ms']:.2f} ms/step (load {load})", flush=True)
    med = {s: statistics.median(x["median_ms"] for x in rows if x["side"] == s) for s in sides_of(case)}
    return {"case": case, "rows": rows, "median_ms": med, "ratio": med["platform"] / med["plain"]}


TARGETS = {"mlp": 1.5, "cora_gcn": 1.10}


def report(results: list[dict], info: dict, loads: tuple[str, str]) -> str:
    lines = ["# Per-step cost: platform vs plain loop of the same recipe", "",
             "Written by `benchmarks/compare/steps.py` (method in its docstring).", "",
             *machine_lines(info), f"- Load average (1/5/15 min) at start: {loads[0]}; at end: {loads[1]}", "",
             "Reproduce:", "", "```", f"OMP_NUM_THREADS=1 {command_line()}", "```", "",
             "| case | platform ms/step | plain ms/step | bare Lightning ms/step | platform / plain | target "
             "| bare Lightning / plain | platform / bare Lightning |",
             "|---|---|---|---|---|---|---|---|"]
    for res in results:
        med, target = res["median_ms"], TARGETS.get(res["case"])
        bare = f"{med['lightning']:.2f}" if "lightning" in med else "-"
        verdict = "" if target is None else f"<= {target} ({'met' if res['ratio'] <= target else 'NOT met'})"
        floor = f"{med['lightning'] / med['plain']:.2f}" if "lightning" in med else "-"
        over = f"{med['platform'] / med['lightning']:.2f}" if "lightning" in med else "-"
        lines.append(f"| {res['case']} | {med['platform']:.2f} | {med['plain']:.2f} | {bare} | "
                     f"**{res['ratio']:.2f}** | {verdict} | {floor} | {over} |")
    lines += ["", "Per round (median and quartiles of the step intervals):", "",
              "| case | round | side | median ms | p25 | p75 | steps | load before |",
              "|---|---|---|---|---|---|---|---|"]
    for res in results:
        for r in res["rows"]:
            lines.append(f"| {res['case']} | {r['round']} | {r['side']} | {r['median_ms']:.2f} | {r['p25_ms']:.2f} | "
                         f"{r['p75_ms']:.2f} | {r['steps']} | {r['load']} |")
    warning = load_warning(*loads, *(r["load"] for res in results for r in res["rows"]))
    return "\n".join(lines + ["", warning, ""] if warning else lines + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "steps.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    info, start = machine(), load_average()
    try:
        results = [measure(case, args.rounds) for case in args.cases]
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    args.out.write_text(report(results, info, (start, load_average())))
    with open(HERE / "steps.jsonl", "a") as f:
        for res in results:
            f.write(json.dumps({"command": command_line(), "code": info["code"], "date": info["date"], **res}) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
