"""What the per-step savings must not change: epoch values equal the exact weighted means, step values
reach the loggers on their steps, metrics are computed once per epoch, last.ckpt still follows the run."""
from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torchmetrics.classification import MulticlassAccuracy

from labformer.callbacks.epoch_metrics import EpochMetrics
from labformer.callbacks.last_checkpoint import LastCheckpoint
from labformer.callbacks.progress import LineProgress, ThrottledTQDM, progress_bar
from labformer.tasks.epoch_logging import EpochLogging

SIZES = [5, 3, 7, 2, 6, 4, 1]  # uneven batches: an unweighted mean of batch means would differ


class Recorder(EpochLogging):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)
        self.acc = MulticlassAccuracy(3, average="micro")
        self.seen: list[tuple[float, int]] = []
        self.computes = 0
        compute = self.acc.compute

        def counted():
            self.computes += 1
            return compute()

        self.acc.compute = counted

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x)
        loss = F.cross_entropy(logits, y)
        self.seen.append((loss.item(), len(y)))
        self.acc.update(logits.detach(), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=len(y))
        self.log("train/acc", self.acc, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Batches:
    """Fixed batches of uneven sizes (a plain list would be taken as several loaders)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.items = [(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in SIZES]

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def batches() -> Batches:
    return Batches()


def test_epoch_means_are_weighted_and_steps_reach_the_logger_on_its_steps(tmp_path):
    module = Recorder()
    data = batches()
    trainer = L.Trainer(max_epochs=1, logger=CSVLogger(tmp_path, name="", version="v"), log_every_n_steps=3,
                        callbacks=[EpochMetrics()], enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, train_dataloaders=data)
    exact = sum(loss * n for loss, n in module.seen) / sum(SIZES)
    assert trainer.callback_metrics["train/loss_epoch"].item() == pytest.approx(exact, rel=1e-6)
    assert module.computes == 1  # the metric was computed once, at the epoch's end
    rows = (tmp_path / "v" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    steps = [int(r.split(",")[header.index("step")]) for r in rows[1:] if r.split(",")[header.index("train/loss_step")]]
    assert steps == [2, 5]  # log_every_n_steps=3: the loggers' steps only


def test_last_checkpoint_is_written_first_and_last_but_not_every_epoch(tmp_path):
    written: list[int] = []

    class Counting(LastCheckpoint):
        def _save_checkpoint(self, trainer, filepath):
            written.append(trainer.current_epoch)
            super()._save_checkpoint(trainer, filepath)

    trainer = L.Trainer(max_epochs=5, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[Counting(tmp_path, min_seconds=3600)])
    trainer.fit(Recorder(), train_dataloaders=batches())
    assert written == [0, 4]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 4
    assert LastCheckpoint(tmp_path, min_seconds=0).min_seconds == 0 and not math.isinf(0)


def test_bars_redraw_by_time_and_log_files_get_lines():
    bar = ThrottledTQDM(refresh_per_second=0.001)  # one redraw per 1000 s
    assert bar._should_update(1, 10)  # the first
    assert not bar._should_update(2, 10) and not bar._should_update(9, 10)
    assert bar._should_update(10, 10)  # the epoch's last batch always
    assert isinstance(progress_bar("tqdm"), LineProgress)  # pytest's stderr is not a terminal
    assert progress_bar("none") is None


def test_lightning_logging_fast_path_is_installed_and_moves_nothing_it_should_not():
    from lightning.pytorch.trainer.connectors.logger_connector.result import _Metadata, _ResultMetric

    from labformer.utils import lightning_logging

    assert lightning_logging.install()  # this Lightning version fits it
    metric = _ResultMetric(_Metadata(fx="training_step", name="loss"), is_tensor=True)
    assert metric.to("cpu") is metric and metric.value.device.type == "cpu"
    moved = metric.to(torch.device("meta"))  # another device: Lightning's own method moves the states
    assert moved.value.device.type == "meta"


class BufferedRecorder(Recorder):
    METRIC_BUFFER_STEPS = 3

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x)
        self.logits.append((logits.detach(), y))
        self.update_metric(self.acc, logits.detach(), y, "train")
        self.log("train/acc", self.acc, on_step=False, on_epoch=True)
        return F.cross_entropy(logits, y)


def test_training_metric_updates_are_applied_in_chunks_with_the_same_epoch_value():
    module = BufferedRecorder()
    module.logits = []
    updates = []
    update = module.acc.update
    module.acc.update = lambda preds, target: (updates.append(len(target)), update(preds, target))
    trainer = L.Trainer(max_epochs=1, logger=False, callbacks=[EpochMetrics()], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=batches())
    assert updates == [5 + 3 + 7, 2 + 6 + 4, 1]  # three steps per update, the rest at the epoch's end
    preds = torch.cat([lg.argmax(1) for lg, _ in module.logits])
    target = torch.cat([y for _, y in module.logits])
    assert trainer.callback_metrics["train/acc"].item() == pytest.approx((preds == target).float().mean().item())
    assert not module._pending


def test_callback_dispatch_calls_what_lightning_would_and_skips_only_empty_hooks():
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.profilers import SimpleProfiler
    from lightning.pytorch.trainer import call

    from labformer.utils import callback_hooks

    assert callback_hooks.install()
    assert {"on_train_batch_end", "on_before_backward", "on_fit_start"} <= callback_hooks.empty_hooks(Callback)
    assert "state_dict" not in callback_hooks.empty_hooks(Callback)
    calls: list[tuple[str, str]] = []

    class Seen(Callback):
        def __init__(self, name: str) -> None:
            self.name = name

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            calls.append((self.name, pl_module._current_fx_name))

    for profiler in (None, SimpleProfiler()):  # a real profiler goes through Lightning's own dispatch
        calls.clear()
        trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, profiler=profiler, callbacks=[Seen("a"), Callback(), Seen("b")])
        trainer.fit(Recorder(), train_dataloaders=batches())
        assert calls == [(n, "on_train_batch_end") for _ in SIZES for n in "ab"]
    assert call._call_callback_hooks.__module__ == "labformer.utils.callback_hooks"
