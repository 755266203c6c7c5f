"""Attention-only forward+backward time and activation memory vs sequence length.

    OMP_NUM_THREADS=1 python benchmarks/lm/attention_scaling.py [--lengths 256 512 ... 16384] [--max-seconds 30]

Every registered attention variant (causal ones causal, encoder mixers non-causal) at
width 128, 4 heads, batch 4. Time: median of `--repeats` forward+backward passes after a
warm-up. Memory: bytes of the tensors autograd keeps for the backward pass (deduplicated
by storage), the activation memory that grows with T; on a GPU the script also reports
the allocator's peak. Results are printed as a Markdown table (and written with --out).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from labformer import registry
from labformer.layers.attention import build_attention, causal_attention_names


def saved_bytes(fn) -> int:
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    out.sum().backward()
    return sum(seen.values())


def measure(name: str, length: int, dim: int, heads: int, batch: int, repeats: int, device: str) -> tuple[float, int]:
    causal = name in causal_attention_names()
    torch.manual_seed(0)
    attn = build_attention(name, dim=dim, num_heads=heads, causal=causal, max_len=length).to(device)
    x = torch.randn(batch, length, dim, device=device, requires_grad=True)

    def step():
        attn(x).sum().backward()

    t0 = time.perf_counter()
    step()  # warm-up (allocations, kernels)
    if time.perf_counter() - t0 > 2.0:  # long passes: one timed repeat is precise enough
        repeats = 1
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    memory = saved_bytes(lambda: attn(x))
    return statistics.median(times) * 1e3, memory


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    p.add_argument("--variants", nargs="+", default=registry.list_models(kind="attention"))
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-cubic-len", type=int, default=256, help="longest T for the O(T^3) simplicial variant")
    p.add_argument("--out", help="also write the table to this file")
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="after a pass slower than this, a variant's longer lengths are not run")
    p.add_argument("--memory-limit-gb", type=float, default=16.0,
                   help="address-space cap: an allocation beyond it fails as 'out of memory' instead of swapping")
    args = p.parse_args()
    limit = int(args.memory_limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    header = "| attention | causal | " + " | ".join(f"T={t} ms / MiB" for t in args.lengths) + " |"
    lines = [f"device {device}, threads {torch.get_num_threads()}, width {args.dim}, heads {args.heads}, "
             f"batch {args.batch}; time: median forward+backward; MiB: tensors saved for backward", "",
             header, "|" + "---|" * (len(args.lengths) + 2)]
    for name in args.variants:
        cells: list[str] = []
        stop = ""  # once set, the longer lengths of this variant are not run
        for t in args.lengths:
            if "T^3" in registry.get(name, kind="attention").meta["complexity"] and t > args.max_cubic_len:
                cells.append("-")
                continue
            if stop:
                cells.append(stop)
                continue
            try:
                ms, mem = measure(name, t, args.dim, args.heads, args.batch, args.repeats, device)
            except (RuntimeError, MemoryError) as e:  # an allocation failed: this T does not fit
                stop = f"out of memory at T={t}: {str(e).splitlines()[0][:40]}"
                cells.append(stop)
                continue
            cells.append(f"{ms:.1f} / {mem / 2**20:.1f}")
            if ms / 1e3 > args.max_seconds:
                stop = f"not run (T={t} took {ms / 1e3:.0f} s)"
        lines.append(f"| {name} | {'yes' if name in causal_attention_names() else 'no'} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        open(args.out, "w").write(table + "\n")


if __name__ == "__main__":
    main()
