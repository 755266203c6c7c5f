"""Checkpoint writes off the training thread: the file holds the moment of the save, writes and removals
keep their order, a failed write is raised, and teardown leaves every file in place."""
from __future__ import annotations

import threading

import pytest
import torch

from labformer.utils import checkpoint_io
from labformer.utils.checkpoint_io import AtomicCheckpointIO


def test_the_file_holds_the_weights_of_the_save_and_is_written_on_another_thread(tmp_path, monkeypatch):
    writers = []
    real_fsync = checkpoint_io.os.fsync
    monkeypatch.setattr(checkpoint_io.os, "fsync", lambda fd: (writers.append(threading.current_thread().name),
                                                               real_fsync(fd)))
    io = AtomicCheckpointIO()
    weights = torch.zeros(3)
    io.save_checkpoint({"w": weights}, tmp_path / "a.ckpt")
    weights += 1  # training goes on at once
    io.teardown()
    assert torch.equal(torch.load(tmp_path / "a.ckpt", weights_only=True)["w"], torch.zeros(3))
    assert writers and all(name.startswith("labformer-checkpoint") for name in writers)
    assert not list(tmp_path.glob("*.tmp"))


def test_writes_and_removals_keep_their_order(tmp_path):
    io = AtomicCheckpointIO()
    for epoch in range(5):  # what ModelCheckpoint does with a new best: save it, then remove the old one
        io.save_checkpoint({"epoch": epoch}, tmp_path / f"best-{epoch}.ckpt")
        if epoch:
            io.remove_checkpoint(tmp_path / f"best-{epoch - 1}.ckpt")
        io.save_checkpoint({"epoch": epoch}, tmp_path / "last.ckpt")
    io.teardown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-4.ckpt", "last.ckpt"]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True) == {"epoch": 4}


def test_a_failed_write_is_raised_at_the_next_save_or_at_teardown(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    io = AtomicCheckpointIO()
    io.save_checkpoint({"x": 1}, tmp_path / "file" / "a.ckpt")
    with pytest.raises(OSError):
        io.save_checkpoint({"x": 2}, tmp_path / "b.ckpt")
    io.save_checkpoint({"x": 3}, tmp_path / "file" / "c.ckpt")
    with pytest.raises(OSError):
        io.teardown()
    assert io._executor is None  # the thread is gone even so
