"""Test metric over seeds for one experiment preset, in-process:

    LABFORMER_DATA_DIR=/path/to/data nice -n 19 .venv/bin/python benchmarks/graph/seeds.py \
        experiment=cora_gcn --seeds 10 [model=gat ...]

Prints each seed's test score and the mean +- std (runs log to a temporary folder, no tracker).
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile

from hydra import compose, initialize_config_dir

from labformer import CONF_DIR, pipeline
from labformer.utils.run_identity import register_resolvers


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("overrides", nargs="*")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--metric", default="test/score")
    args = p.parse_args()
    register_resolvers()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    scores = []
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for seed in range(args.seeds):
            cfg = compose("train", overrides=["task=graph", *args.overrides, f"seed={seed}", "logger=none",
                                              "callbacks.progress_bar=none", f"paths.log_dir={tmp}",
                                              f"run_id=seed{seed}", "trainer.enable_model_summary=false"])
            result = pipeline.train(cfg)
            scores.append(result.test_metrics[args.metric])
            print(f"seed {seed}: {args.metric} {scores[-1]:.4f}", flush=True)
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    print(f"{' '.join(args.overrides)}: {args.metric} {statistics.mean(scores):.4f} +- {std:.4f} over {len(scores)} seeds")


if __name__ == "__main__":
    main()
