"""Contrastive family benchmarks, through the real platform (`pipeline.train`).

Fashion-MNIST: kNN (k=5, cosine, the 54k clean training images as the bank) test accuracy
of the frozen encoder after SimSiam, MSN and InfoNCE pretraining for a fixed number of
epochs each, next to the raw-pixel kNN floor computed the same way on the same split (the
issue quotes 0.855). A method that does not beat raw pixels is reported as such.
Omniglot: 20-way one-shot accuracy (episodes within the held-out characters) of the
triplet and pair siamese models.

    .venv/bin/python benchmarks/contrastive/run.py --fmnist-epochs 2 --omniglot-epochs 30
    .venv/bin/python benchmarks/contrastive/run.py --only omniglot

Results are merged into results.json by row and results.md is rewritten after each row.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "vision"))
from common import command_line, compose, load_average, machine, machine_lines  # noqa: E402

from labformer import pipeline  # noqa: E402
from labformer.builders import build_datamodule  # noqa: E402
from labformer.evaluation.embedding import knn_accuracy  # noqa: E402

FLOOR_QUOTED = 0.855
ONESHOT_BASELINE = 0.612  # modified Hausdorff distance, Lake et al.'s official 20-way runs


def raw_pixel_floor(log_dir: Path) -> dict:
    dm = build_datamodule(compose("task=vision", "data=fashion_mnist", f"paths.log_dir={log_dir}"))
    dm.setup()
    flat = lambda s: ((s.images.float() / 255).flatten(1), s.labels)  # noqa: E731
    (bank, bank_y), (test, test_y) = flat(dm.train_set), flat(dm.test_set)
    started = time.perf_counter()
    acc = knn_accuracy(bank, bank_y, test, test_y, k=5)
    return {"row": "raw pixels", "objective": "-", "knn_acc": acc, "seconds": time.perf_counter() - started}


def run(row: str, overrides: list[str], log_dir: Path, keys: list[str]) -> dict:
    started, load_before = time.perf_counter(), load_average()
    cfg = compose(*overrides, "logger=csv", "callbacks.progress_bar=none", f"paths.log_dir={log_dir}",
                  f"run_id=bench-{row.replace(' ', '-').replace('/', '-')}-{time.strftime('%H%M%S')}")
    result = pipeline.train(cfg)
    out = {"row": row, "overrides": overrides, "seconds": time.perf_counter() - started,
           "load_before": load_before, "load_after": load_average(), "date": time.strftime("%Y-%m-%d %H:%M")}
    out.update({k.split("/")[-1]: result.test_metrics.get(k) for k in keys})
    shutil.rmtree(result.run_dir, ignore_errors=True)
    return out


def write(args, info, results: dict) -> None:
    floor = results.get("raw pixels", {}).get("knn_acc")
    lines = ["# Contrastive family: Fashion-MNIST kNN and Omniglot one-shot", "",
             "Written by `benchmarks/contrastive/run.py`; see its docstring for the method.", "",
             *machine_lines(info), f"- torch threads: {torch.get_num_threads()}", "",
             "Reproduce (from the repository root):", "", "```", command_line(), "```", "",
             "## Fashion-MNIST: kNN (k=5) test accuracy of the frozen encoder", "",
             f"Train 54k (bank) / test 10k (official). Raw-pixel floor measured here: "
             f"{floor:.4f} (quoted: {FLOOR_QUOTED})." if floor else "", "",
             "| pretraining | overrides | kNN acc | linear probe | embedding std | vs raw pixels | wall s | load before / after |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if r.get("knn_acc") is None or name == "raw pixels":
            continue
        verdict = "beats" if floor and r["knn_acc"] > floor else "does NOT beat"
        lines.append(f"| {name} | `{' '.join(r['overrides'])}` | {r['knn_acc']:.4f} | {r.get('probe_acc') or 0:.4f} | "
                     f"{r.get('embedding_std') or 0:.4f} | {verdict} | {r['seconds']:.0f} | "
                     f"{r['load_before']} / {r['load_after']} |")
    lines += ["", "## Omniglot: 20-way one-shot accuracy on held-out characters", "",
              "Episodes: 20 characters, one drawing each as support and one as query, within an alphabet when "
              "it has 20 held-out characters, else across alphabets; cosine for triplet, the learned scorer "
              f"for pair. Reference: modified Hausdorff distance {ONESHOT_BASELINE:.1%} on the official runs "
              "(evaluation alphabets); with only `images_background_small1.zip` here the test characters are "
              "held out of its 5 alphabets, which is not the same set.", "",
              "| model | overrides | 20-way one-shot | wall s | load before / after |", "|---|---|---|---|---|"]
    for name, r in results.items():
        if r.get("oneshot_20way_acc") is not None:
            lines.append(f"| {name} | `{' '.join(r['overrides'])}` | {r['oneshot_20way_acc']:.4f} | "
                         f"{r['seconds']:.0f} | {r['load_before']} / {r['load_after']} |")
    args.out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fmnist-epochs", type=int, default=2)
    parser.add_argument("--omniglot-epochs", type=int, default=30)
    parser.add_argument("--model", default="vit_nano")
    parser.add_argument("--only", choices=["fmnist", "omniglot"], default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results_path = args.out.with_suffix(".json")
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    info = machine()
    log_dir = Path(tempfile.mkdtemp(prefix="labformer-contrastive-"))

    def save(row: dict) -> None:
        results[row["row"]] = row
        print(json.dumps(row), flush=True)
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        write(args, info, results)

    try:
        if args.only in (None, "fmnist"):
            save(raw_pixel_floor(log_dir))
            for objective in ("simsiam", "msn", "infonce"):
                save(run(objective, ["task=contrastive", f"objective={objective}", f"model={args.model}",
                                     "data=fashion_mnist", "data.batch_size=256",
                                     f"trainer.max_epochs={args.fmnist_epochs}"], log_dir,
                         ["test/knn_acc", "test/probe_acc", "test/embedding_std"]))
        if args.only in (None, "omniglot"):
            for objective in ("triplet", "pair"):
                save(run(f"omniglot {objective}", ["task=contrastive", f"objective={objective}",
                                                   f"model={args.model}", "data=omniglot",
                                                   "task.monitor=val/oneshot_acc", "task.episodes.episodes=400",
                                                   f"trainer.max_epochs={args.omniglot_epochs}"], log_dir,
                         ["test/oneshot_20way_acc"]))
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
