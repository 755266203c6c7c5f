"""nanoGPT's own checkpoint, scored exactly by the platform's evaluator.

nanoGPT (github.com/karpathy/nanoGPT, fetched and run unchanged, never copied here) reports the
validation loss of its CPU recipe on tiny-shakespeare from 20 random batches. This script loads
the `ckpt.pt` such a run wrote, with the repository's own `model.py`, and scores every validation
token once through the platform's tiny-shakespeare DataModule (non-overlapping windows of the
model's context, the same split and alphabet), as the LM task scores its own runs:

    cd <nanoGPT> && cp <data>/tinyshakespeare/input.txt data/shakespeare_char/
    python data/shakespeare_char/prepare.py
    OMP_NUM_THREADS=1 python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20 \\
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 \\
        --lr_decay_iters=2000 --dropout=0.0
    .venv/bin/python benchmarks/lm/nanogpt_reference.py <nanoGPT> <nanoGPT>/out-shakespeare-char/ckpt.pt

Appends one JSON line to nanogpt_reference.jsonl beside this file.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from labformer.data.lm.base import IGNORE
from labformer.registry import create
from labformer.results.record import git_state, machine

HERE = Path(__file__).resolve().parent


def load_reference_model(repo: Path, ckpt_path: Path):
    spec = importlib.util.spec_from_file_location("nanogpt_model", repo / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)  # nanoGPT's own file: trusted here
    model = module.GPT(module.GPTConfig(**ckpt["model_args"]))
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    model.load_state_dict(state)
    return model.eval(), ckpt


@torch.no_grad()
def exact_validation_loss(model, data_dir: str, cache_dir: str | None, context: int) -> tuple[float, int]:
    dm = create("lm", "tinyshakespeare", kind="dataset", data_dir=data_dir, cache_dir=cache_dir, context=context,
                download=False)
    dm.setup("fit")
    total, tokens = 0.0, 0
    for x, y in dm.val_dataloader():
        logits, _ = model(x, y.clamp_min(0))  # nanoGPT's forward wants targets to return every position
        keep = y != IGNORE
        total += F.cross_entropy(logits.flatten(0, 1)[keep.flatten()], y[keep], reduction="sum").item()
        tokens += int(keep.sum())
    return total / tokens, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", type=Path, help="the nanoGPT checkout the checkpoint was trained with")
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--data-dir", default=os.environ.get("LABFORMER_DATA_DIR", "data"))
    parser.add_argument("--cache-dir", default=None, help="token cache (default: <data-dir>/tinyshakespeare/cache)")
    args = parser.parse_args()
    model, ckpt = load_reference_model(args.repo, args.ckpt)
    meta = pickle.loads((args.repo / "data" / "shakespeare_char" / "meta.pkl").read_bytes())
    dm = create("lm", "tinyshakespeare", kind="dataset", data_dir=args.data_dir, download=False)
    assert "".join(meta["itos"][i] for i in range(meta["vocab_size"])) == dm.alphabet, "alphabets differ"
    start = time.perf_counter()
    loss, tokens = exact_validation_loss(model, args.data_dir, args.cache_dir, ckpt["model_args"]["block_size"])
    commit = subprocess.run(["git", "-C", str(args.repo), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    row = {"reference": "karpathy/nanoGPT", "reference_commit": commit, "iter_num": ckpt["iter_num"],
           "reference_estimate": float(ckpt["best_val_loss"]), "exact_val_loss": round(loss, 4),
           "val_tokens": tokens, "eval_seconds": round(time.perf_counter() - start, 1),
           "model_args": ckpt["model_args"], "config": ckpt.get("config"), "git": git_state(),
           "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
           "command": f"benchmarks/lm/nanogpt_reference.py <nanoGPT> {args.ckpt.name}"}
    print(json.dumps({k: row[k] for k in ("iter_num", "reference_estimate", "exact_val_loss", "val_tokens")}))
    with open(HERE / "nanogpt_reference.jsonl", "a") as f:
        f.write(json.dumps(row, default=str) + "\n")


if __name__ == "__main__":
    main()
