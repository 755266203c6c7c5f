"""nanoGPT's CPU recipe as a plain PyTorch loop, outside the platform (no Lightning, no Hydra):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lm/plain_loop.py ../shared/data/tinyshakespeare/input.txt --seed 1337

A control for `experiment=shakespeare_char`: if this loop and the platform land on the same
validation loss, the platform reproduces the recipe and any gap to a published figure lies in
the recipe or its measurement, not in our Trainer, DataModule or blocks. Self-contained on
purpose: the model is written here again in a few lines rather than imported.

Recipe: character vocabulary, first 90% train / last 10% validation; GPT with 4 pre-LayerNorm
blocks, 4 heads, width 128, context 64, no biases, no dropout, tied embedding, N(0, 0.02) init
with residual projections at 0.02 / sqrt(2 x depth); batch 12 random windows; AdamW lr 1e-3,
betas (0.9, 0.99), weight decay 0.1 on matrices only; 100 linear warm-up steps, cosine to 1e-4
at step 2000; gradient norm clipped at 1.0. Prints the exact validation loss (every token
once) and nanoGPT's estimate (mean of 20 batches of 12 random windows) every 250 steps, and
appends one JSON line to plain_loop.jsonl.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "plain_loop.jsonl"


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, bias: bool):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim, bias=bias), nn.LayerNorm(dim, bias=bias)
        self.qkv, self.out = nn.Linear(dim, 3 * dim, bias=bias), nn.Linear(dim, dim, bias=bias)
        self.up, self.down = nn.Linear(dim, 4 * dim, bias=bias), nn.Linear(4 * dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int, context: int, dim: int, depth: int, heads: int, bias: bool):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, bias) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, bias=bias)
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue  # LayerNorm weights stay 1, biases 0
            std = 0.02 / math.sqrt(2 * depth) if name.endswith(("out.weight", "down.weight")) else 0.02
            nn.init.normal_(p, 0.0, std)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.norm(x) @ self.tok.weight.T  # tied output layer


def lr_at(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / (args.warmup + 1)
    ratio = min(1.0, (step - args.warmup) / (args.steps - args.warmup))
    return args.min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (args.lr - args.min_lr)


@torch.no_grad()
def exact_loss(model, data: torch.Tensor, context: int) -> float:
    n = (len(data) - 1) // context
    x = data[: n * context].view(n, context)
    y = data[1 : n * context + 1].view(n, context)
    total = sum(F.cross_entropy(model(xb).flatten(0, 1), yb.flatten(), reduction="sum").item()
                for xb, yb in zip(x.split(256), y.split(256)))
    return total / (n * context)


def windows(data: torch.Tensor, count: int, context: int, gen: torch.Generator):
    starts = torch.randint(len(data) - context, (count,), generator=gen)
    offsets = torch.arange(context)
    return data[starts[:, None] + offsets], data[starts[:, None] + offsets + 1]


@torch.no_grad()
def estimate(model, data, args, gen) -> float:
    return sum(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
               for x, y in (windows(data, args.batch, args.context, gen) for _ in range(20))) / 20


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("text")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--bias", action="store_true")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--context", type=int, default=64)
    args = p.parse_args()

    text = Path(args.text).read_text()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text])
    cut = int(0.9 * len(data))
    train, val = data[:cut], data[cut:]

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = TinyGPT(len(chars), args.context, 128, 4, 4, args.bias)
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": matrices, "weight_decay": 0.1}, {"params": vectors, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.99))
    curve, start = {}, time.time()
    for step in range(args.steps + 1):
        if step % 250 == 0 or step == args.steps:
            model.eval()
            curve[step] = (round(exact_loss(model, val, args.context), 4), round(estimate(model, val, args, gen), 4))
            model.train()
            print(f"step {step}: val loss exact {curve[step][0]:.4f}, 20-batch estimate {curve[step][1]:.4f}"
                  f" ({time.time() - start:.0f} s)", flush=True)
        if step == args.steps:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        x, y = windows(train, args.batch, args.context, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    row = {"seed": args.seed, "bias": args.bias, "steps": args.steps, "val_exact": curve[args.steps][0],
           "val_estimate": curve[args.steps][1], "curve": curve, "seconds": round(time.time() - start),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M")}
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
