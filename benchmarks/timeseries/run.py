"""One row of the ETTh1 tables per (experiment, horizon): train once, test under both protocols.

    python benchmarks/timeseries/run.py etth1_itransformer [key=value ...] --horizons 96 192 336 720

Training is exactly `python train.py experiment=<name> data.horizon=<H>`; the best
checkpoint is then tested twice: every test window (`test/mse`, the honest number) and the
published tables' loader, batch 32 with the last incomplete batch dropped
(`test/mse_drop_last`). Appends one JSON line per row to results.jsonl beside this file,
with seconds per epoch (train + validation), wall time and the machine's state, and
rewrites etth1.md (the table) from all rows.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from labformer import pipeline
from labformer.builders import build_datamodule, build_task
from labformer.utils.checkpoint_io import CONFIG_KEY, read_checkpoint
from labformer.config_store import compose_config

HERE = Path(__file__).resolve().parent
PAPER = {  # ETTh1, multivariate; (MSE, MAE) published (None: not checked against the paper here)
    "etth1_itransformer": {96: (0.386, 0.405), 192: (0.441, 0.436), 336: (0.487, 0.458), 720: (0.503, 0.491)},
    "etth1_dlinear": {96: (0.396, None), (96, 336): (0.375, 0.399)},  # keys: H, or (H, L) where L matters
    "etth1_patchtst": {96: (0.414, 0.419), 192: (0.460, 0.445), 336: (0.501, 0.466), 720: (0.500, 0.488)},
    "etth1_samformer": {96: (0.381, None)},
}


def published_protocol(best_ckpt: str, batch_size: int = 32) -> dict[str, float]:
    """Test `best_ckpt` with the published loader: batch 32, last incomplete batch dropped."""
    stored = OmegaConf.create(read_checkpoint(best_ckpt)[CONFIG_KEY]["config"])
    stored.data.test_drop_last, stored.data.batch_size = True, batch_size
    datamodule = build_datamodule(stored)
    module = build_task(stored, datamodule, OmegaConf.to_container(stored))
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    return {k: float(v) for k, v in trainer.test(module, datamodule=datamodule, ckpt_path=best_ckpt,
                                                 verbose=False)[0].items()}


def validated_epochs(run_dir: Path) -> int:
    """Epochs trained, from the CSV log (last.ckpt may lag behind: Lightning skips it when top-k did not save)."""
    with open(run_dir / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return len({r["epoch"] for r in rows if r.get("val/mse")})


def run_row(experiment: str, horizon: int, extra: list[str]) -> dict:
    overrides = [f"experiment={experiment}", f"data.horizon={horizon}", "logger=csv", "callbacks.progress_bar=none",
                 f"run_id=bench-{experiment}-{horizon}-{time.strftime('%m%d%H%M%S')}", *extra]
    cfg = compose_config(*overrides)
    start = time.perf_counter()
    result = pipeline.train(cfg)
    wall = time.perf_counter() - start
    epochs = validated_epochs(result.run_dir)
    metrics = {**result.test_metrics, **published_protocol(result.best_ckpt)}
    published = PAPER.get(experiment, {})
    paper = published.get((horizon, cfg.data.lookback), published.get(horizon))
    row = {"experiment": experiment, "horizon": horizon, "overrides": extra,
           "command": "python train.py " + " ".join(o for o in overrides if not o.startswith(("logger", "callbacks",
                                                                                                "run_id"))),
           "mse_all_windows": metrics["test/mse"], "mae_all_windows": metrics["test/mae"],
           "mse_drop_last": metrics["test/mse_drop_last"], "mae_drop_last": metrics["test/mae_drop_last"],
           "windows_all": metrics["test/windows"], "windows_drop_last": metrics["test/windows_drop_last"],
           "paper_mse_mae": paper, "epochs": epochs, "seconds_per_epoch": wall / max(1, epochs),
           "wall_seconds": wall, "threads": torch.get_num_threads(), "run_dir": str(result.run_dir),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
                      f"{os.getloadavg()[0]:.1f} at the end", "torch": torch.__version__,
           "date": time.strftime("%Y-%m-%d %H:%M")}
    with open(HERE / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    write_report()
    print(json.dumps(row, indent=2))
    return row


def write_report() -> None:
    rows = [json.loads(line) for line in (HERE / "results.jsonl").read_text().splitlines() if line.strip()]
    lines = ["# ETTh1 forecasting (multivariate, scaled MSE/MAE)", "",
             "Written by `benchmarks/timeseries/run.py` from `results.jsonl`. `all` = every test window "
             "(`test/mse`); `drop_last` = the published tables' loader (batch 32, last incomplete batch dropped). "
             "Paper: the published number for the same L and H. Reproduce a row with its command "
             "(`LABFORMER_DATA_DIR` must hold `ett/ETTh1.csv`).", "",
             "| model | L | H | MSE all | MAE all | MSE drop_last | MAE drop_last | paper MSE / MAE | epochs | s/epoch "
             "| wall s | machine | command |", "|" + "---|" * 13]
    for r in rows:
        lookback = 512 if "samformer" in r["experiment"] else 96
        lookback = next((int(o.split("=")[1]) for o in r["overrides"] if o.startswith("data.lookback=")), lookback)
        paper = r["paper_mse_mae"] or [None, None]
        lines.append(f"| {r['experiment'].split('_', 1)[1]} | {lookback} | {r['horizon']} | {r['mse_all_windows']:.4f} "
                     f"| {r['mae_all_windows']:.4f} | {r['mse_drop_last']:.4f} | {r['mae_drop_last']:.4f} "
                     f"| {paper[0] if paper[0] is not None else '-'} / {paper[1] if paper[1] is not None else '-'} "
                     f"| {r['epochs']} | {r['seconds_per_epoch']:.1f} | {r['wall_seconds']:.0f} "
                     f"| {r.get('machine', '-')}, {r['threads']} thread(s), {r.get('date', '')} | `{r['command']}` |")
    (HERE / "etth1.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="a conf/experiment/ preset, e.g. etth1_itransformer")
    parser.add_argument("--horizons", type=int, nargs="+", default=[96])
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides")
    args = parser.parse_args()
    for horizon in args.horizons:
        run_row(args.experiment, horizon, args.overrides)


if __name__ == "__main__":
    main()
