"""Exphormer vs dense GPS: forward+backward time and peak memory on one random graph.

    nice -n 19 .venv/bin/python benchmarks/graph/scaling.py [--nodes 1000 4000 16000 64000] [--threads 2]

Graphs: N nodes, N*5/2 random undirected edges (average degree 5), 3 input features;
models at hidden 64, 2 layers, 4 heads (GPS: full softmax attention, `GPSConv`, O(N^2)
memory; Exphormer: expander degree 4 + 1 virtual node + graph edges, O(N+E)). Each point
runs in a fresh process; memory is the growth of peak RSS over the process after import
(CPU) or torch.cuda.max_memory_allocated (GPU). Dense points whose attention matrix alone
would exceed --dense-limit-gb are not run and reported as such.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(model: str, n: int, device: str, threads: int, repeats: int) -> dict:
    import torch
    from torch_geometric.data import Batch, Data

    from labformer import registry

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    src, dst = torch.randint(0, n, (2, n * 5 // 2), generator=g)
    data = Data(x=torch.randn(n, 3, generator=g), edge_index=torch.cat([torch.stack([src, dst]),
                                                                        torch.stack([dst, src])], 1), num_nodes=n)
    net = registry.create("graph", model, in_dim=3, hidden=64, num_layers=2, heads=4)
    if getattr(net, "data_transform", None) is not None:
        data = net.data_transform(data)
    batch = Batch.from_data_list([data]).to(device)
    net = net.to(device)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats + 1):  # the first is warm-up
        t0 = time.perf_counter()
        net(batch).sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
    return {"model": model, "nodes": n, "edges": int(data.edge_index.shape[1]), "seconds": min(times[1:]),
            "peak_mb": round(peak, 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, nargs="+", default=[1000, 4000, 16000, 64000])
    p.add_argument("--models", nargs="+", default=["exphormer", "gps"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dense-limit-gb", type=float, default=2.0)
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.device, args.threads, args.repeats)))
        return
    print(f"{'model':10s} {'nodes':>7s} {'edges':>8s} {'fwd+bwd s':>10s} {'peak MB':>9s}")
    for n in args.nodes:
        for model in args.models:
            attn_gb = 4 * n * n * 4 / 2**30  # heads x N x N float32, forward only
            if model == "gps" and attn_gb > args.dense_limit_gb:
                print(f"{model:10s} {n:7d} {'':>8s} {'not run':>10s}  (attention matrix alone {attn_gb:.1f} GB)")
                continue
            out = subprocess.run([sys.executable, __file__, "--one", model, str(n), "--device", args.device,
                                  "--threads", str(args.threads), "--repeats", str(args.repeats)],
                                 capture_output=True, text=True)
            if out.returncode:
                print(f"{model:10s} {n:7d} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{model:10s} {n:7d} {r['edges']:8d} {r['seconds']:10.3f} {r['peak_mb']:9.1f}", flush=True)


if __name__ == "__main__":
    main()
