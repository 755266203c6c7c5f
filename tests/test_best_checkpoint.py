"""best-*.ckpt held in memory between writes: the same file as writing every improvement, and a best
file on disk, the one last.ckpt names, whenever the run could be killed."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from labformer import pipeline
from labformer.callbacks.best_checkpoint import BestCheckpoint

from conftest import compose_config

# The epoch counter as the monitor (a candidate Lightning always offers): with mode=max every epoch is
# a new best, so every epoch after the first is held when writes are rare.
EVERY_EPOCH_BEST = ("task.monitor=epoch", "task.mode=max", "trainer.limit_train_batches=2",
                    "trainer.limit_val_batches=1", "data.batch_size=16", "trainer.deterministic=true", "test=false")


class Probe(L.Callback):
    """At each epoch start: what is on disk after the previous epoch's checkpoints (files in place)."""

    def __init__(self, fail_at_epoch: int | None = None) -> None:
        self.fail_at_epoch, self.seen = fail_at_epoch, []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 0:
            return
        trainer.strategy.checkpoint_io.wait()
        folder = trainer.checkpoint_callback.dirpath
        last = torch.load(f"{folder}/last.ckpt", weights_only=True, map_location="cpu")
        named = next(v for k, v in last["callbacks"].items() if k.startswith("BestCheckpoint"))["best_model_path"]
        self.seen.append((named, sorted(p.name for p in Path(folder).glob("best-*.ckpt"))))
        if trainer.current_epoch == self.fail_at_epoch:
            raise RuntimeError("killed by the test")


def train_with(monkeypatch, tmp_path, run_id: str, *overrides: str, probe: Probe | None = None):
    if probe is not None:
        build = pipeline.build_callbacks
        monkeypatch.setattr(pipeline, "build_callbacks", lambda cfg, run_dir: build(cfg, run_dir) + [probe])
    cfg = compose_config(f"run_id={run_id}", *EVERY_EPOCH_BEST, *overrides, log_dir=tmp_path)
    return pipeline.train(cfg)


def best_files(tmp_path, run_id: str) -> list:
    return sorted((tmp_path / "runs" / run_id / "checkpoints").glob("best-*.ckpt"))


def test_held_improvements_give_the_same_best_checkpoint_as_writing_each_one(monkeypatch, tmp_path):
    train_with(monkeypatch, tmp_path, "each", "trainer.max_epochs=4", "callbacks.checkpoint.best_every_seconds=0")
    train_with(monkeypatch, tmp_path, "held", "trainer.max_epochs=4", "callbacks.checkpoint.best_every_seconds=3600")
    (each,), (held,) = best_files(tmp_path, "each"), best_files(tmp_path, "held")
    assert each.name == held.name == "best-epoch003.ckpt"
    a, b = (torch.load(p, weights_only=True, map_location="cpu") for p in (each, held))
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert "optimizer_states" not in b and "labformer" in b  # weights, config and provenance


def test_the_best_file_last_ckpt_names_is_on_disk_after_every_epoch(monkeypatch, tmp_path):
    probe = Probe()
    train_with(monkeypatch, tmp_path, "inv", "trainer.max_epochs=5", "callbacks.checkpoint.best_every_seconds=3600",
               "callbacks.checkpoint.last_every_seconds=0", probe=probe)
    assert len(probe.seen) == 4
    for epoch, (named, on_disk) in enumerate(probe.seen):
        assert on_disk == [f"best-epoch{epoch:03d}.ckpt"] and named.endswith(on_disk[0]), probe.seen


def test_a_held_best_is_written_when_the_run_fails_and_the_one_it_replaced_kept_until_then(monkeypatch, tmp_path):
    # last.ckpt is written after epoch 0 only: epoch 1's best is held, epoch 0's file stays the one on disk.
    probe = Probe(fail_at_epoch=2)
    with pytest.raises(RuntimeError, match="killed by the test"):
        train_with(monkeypatch, tmp_path, "crash", "trainer.max_epochs=6",
                   "callbacks.checkpoint.best_every_seconds=3600", "callbacks.checkpoint.last_every_seconds=3600",
                   probe=probe)
    assert probe.seen[0][1] == ["best-epoch000.ckpt"]  # epoch 1 held: the file last.ckpt names is still there
    assert probe.seen[1][1] == ["best-epoch000.ckpt"]
    (best,) = best_files(tmp_path, "crash")
    assert best.name == "best-epoch001.ckpt"
    assert torch.load(best, weights_only=True, map_location="cpu")["epoch"] == 1


def test_large_models_and_full_checkpoints_are_never_held():
    callback = BestCheckpoint(monitor="epoch", save_weights_only=False, min_seconds=3600)
    assert not callback._may_hold(trainer=None)  # full-state best checkpoints are written as Lightning does
