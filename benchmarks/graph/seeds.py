"""Test metric over seeds, splits or folds for one experiment preset, in-process:

    LABFORMER_DATA_DIR=/path/to/data .venv/bin/python benchmarks/graph/seeds.py experiment=cora_gcn --seeds 10
    ... benchmarks/graph/seeds.py experiment=minesweeper_gcn --over data.split --seeds 10   # the 10 fixed splits
    ... benchmarks/graph/seeds.py experiment=mutag_gine --over data.fold --seeds 10        # 10-fold CV

Prints each run's test score and the mean +- std (runs log to a temporary folder, no tracker),
and appends one JSON line per call to results.jsonl beside this file (scores, seconds, command).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from labformer import pipeline
from labformer.config_store import compose_config

RESULTS = Path(__file__).resolve().parent / "results.jsonl"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("overrides", nargs="*")
    p.add_argument("--seeds", type=int, default=10, help="how many values of --over: 0, 1, ..., N-1")
    p.add_argument("--over", default="seed", help="the key that varies: seed, data.split or data.fold")
    p.add_argument("--first", type=int, default=0, help="first value of --over (to split a sweep across processes)")
    p.add_argument("--metric", default="test/score")
    args = p.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    scores, start = [], time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.first, args.first + args.seeds):
            cfg = compose_config("task=graph", *args.overrides, f"{args.over}={i}", "logger=none",
                                 "callbacks.progress_bar=none", f"paths.log_dir={tmp}", f"run_id=run{i}",
                                 "trainer.enable_model_summary=false")
            result = pipeline.train(cfg)
            scores.append(result.test_metrics[args.metric])
            print(f"{args.over} {i}: {args.metric} {scores[-1]:.4f}", flush=True)
    mean, std = statistics.mean(scores), statistics.stdev(scores) if len(scores) > 1 else 0.0
    print(f"{' '.join(args.overrides)}: {args.metric} {mean:.4f} +- {std:.4f} over {len(scores)} values of {args.over}")
    row = {"overrides": args.overrides, "over": args.over, "metric": args.metric, "scores": [round(s, 4) for s in scores],
           "mean": round(mean, 4), "std": round(std, 4), "seconds": round(time.time() - start),
           "threads": os.environ.get("OMP_NUM_THREADS"), "load_end": round(os.getloadavg()[0], 2),
           "date": time.strftime("%Y-%m-%d %H:%M"),
           "command": f"benchmarks/graph/seeds.py {' '.join(args.overrides)} --over {args.over} --seeds {args.seeds}"
                      + (f" --first {args.first}" if args.first else "")}
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
