"""How far nanoGPT's validation estimate scatters around the exact validation loss.

    .venv/bin/python benchmarks/lm/estimator_spread.py logs/lm_variants/runs/softmax/checkpoints/last.ckpt

nanoGPT's CPU recipe reports the mean loss over 20 random batches of 12 windows of 64
characters (`--eval_iters=20`), a fresh random draw each time. Our validation scores every
token once. This script loads one checkpoint, computes the exact loss, then repeats
nanoGPT's estimate `--draws` times and prints its mean, spread and range, so a published
single estimate can be read against ours.
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from labformer.builders import build_datamodule, build_task
from labformer.utils.checkpoint_io import CONFIG_KEY, read_checkpoint


@torch.no_grad()
def window_losses(task, tokens: np.ndarray, starts: np.ndarray, context: int, batch: int = 256) -> np.ndarray:
    """Mean next-token loss of each window tokens[s : s + context] (targets shifted by one)."""
    out = []
    for i in range(0, len(starts), batch):
        idx = starts[i:i + batch, None] + np.arange(context + 1)
        chunk = torch.from_numpy(tokens[idx].astype(np.int64))
        logits = task.logits(chunk[:, :-1]).float()
        loss = F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="none").mean(1)
        out.append(loss.numpy())
    return np.concatenate(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("ckpt")
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--eval-iters", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=int, default=20000, help="random window starts scored once, drawn from")
    args = p.parse_args()
    torch.set_num_threads(1)
    ckpt = read_checkpoint(args.ckpt)
    cfg = OmegaConf.create(ckpt[CONFIG_KEY]["config"])
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    task = build_task(cfg, datamodule, OmegaConf.to_container(cfg))
    task.load_state_dict(ckpt["state_dict"])
    task.eval()
    val, context, batch = np.asarray(datamodule.tokens["val"]), cfg.data.context, cfg.data.batch_size

    # Exact: non-overlapping windows covering the split once (as our validation loop).
    starts = np.arange(0, len(val) - context - 1, context)
    exact = float(window_losses(task, val, starts, context).mean())
    # nanoGPT: every window start equally likely; each estimate averages eval_iters x batch windows.
    rng = np.random.default_rng(args.seed)
    # A large random pool of window starts stands in for "every start" (each draw resamples it).
    pool = rng.choice(len(val) - context - 1, size=min(args.pool, len(val) - context - 1), replace=False)
    per_window = window_losses(task, val, pool, context)
    draws = [float(per_window[rng.integers(0, len(per_window), args.eval_iters * batch)].mean())
             for _ in range(args.draws)]
    print(f"checkpoint {args.ckpt}")
    print(f"exact validation loss (every token once): {exact:.4f}; mean over {len(per_window)} random windows: "
          f"{per_window.mean():.4f}")
    print(f"nanoGPT estimate ({args.eval_iters} x {batch} random windows of {context}), {args.draws} draws: "
          f"mean {statistics.mean(draws):.4f}, std {statistics.stdev(draws):.4f}, "
          f"min {min(draws):.4f}, max {max(draws):.4f}, "
          f"share <= 1.88: {sum(d <= 1.88 for d in draws) / len(draws):.2f}, "
          f"share <= 1.89: {sum(d <= 1.89 for d in draws) / len(draws):.2f}")


if __name__ == "__main__":
    main()
