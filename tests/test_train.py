"""Training, evaluation, init_from and the bad-input paths, in-process on the digits."""
from __future__ import annotations

import json

import pytest
import torch

from labformer import pipeline, registry
from labformer.errors import UserError
from labformer.tasks.base import NonFiniteLossError
from labformer.tasks.vision import VisionTask
from labformer.utils.checkpoint_io import CONFIG_KEY

from conftest import compose_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short digits run shared by the tests below."""
    logs = tmp_path_factory.mktemp("logs")
    cfg = compose_config("run_id=short", "trainer.max_epochs=5", "data.batch_size=16", "trainer.deterministic=true",
                         log_dir=logs)
    return pipeline.train(cfg), logs


def test_short_run_learns_the_digits(trained):
    result, _ = trained
    assert result.test_metrics["test/acc"] > 0.5, result.test_metrics  # chance is 0.1
    assert result.monitor_value is not None and result.monitor_value > 0.5


def test_run_directory_holds_config_checkpoints_and_metrics(trained):
    result, logs = trained
    assert result.run_dir == logs / "runs" / "short"
    assert (result.run_dir / "config.yaml").is_file()
    assert result.last_ckpt.endswith("checkpoints/last.ckpt") and result.best_ckpt
    stored = json.loads((result.run_dir / "test_metrics.json").read_text())
    assert stored == pytest.approx(result.test_metrics, abs=0)
    ckpt = torch.load(result.last_ckpt, map_location="cpu", weights_only=True)
    config = ckpt[CONFIG_KEY]["config"]
    assert config["run_id"] == "short" and config["model"]["name"] == "vit_nano"
    assert not list(result.run_dir.rglob("*.tmp")), "atomic writes leave no temp files"


def test_last_checkpoint_is_the_latest_epoch_even_when_the_metric_got_worse(tmp_path):
    # Minimising the epoch counter (a checkpoint candidate Lightning always offers): only epoch 0 is
    # "best", yet last.ckpt must follow training.
    cfg = compose_config("run_id=worse", "task.monitor=epoch", "task.mode=min", "trainer.max_epochs=3", "trainer.limit_train_batches=3",
                         "test=false", log_dir=tmp_path)
    pipeline.train(cfg)
    checkpoints = tmp_path / "runs" / "worse" / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 2
    assert [p.name for p in checkpoints.glob("best-*.ckpt")] == ["best-epoch000.ckpt"]


def test_eval_rebuilds_from_the_checkpoint_alone_and_matches(trained, tmp_path):
    result, _ = trained
    cfg = compose_config(f"ckpt_path={result.best_ckpt}", config="eval")
    metrics = pipeline.evaluate(cfg)
    assert metrics == result.test_metrics  # exactly: same weights, data and order


def test_init_from_loads_weights_only(trained, tmp_path):
    result, _ = trained
    cfg = compose_config(f"init_from={result.best_ckpt}", "trainer.max_epochs=0", "run_id=init",
                         "data.batch_size=16", "trainer.deterministic=true", log_dir=tmp_path)
    again = pipeline.train(cfg)
    assert again.test_metrics == result.test_metrics  # untrained further: the same weights
    assert again.run_dir != result.run_dir


def test_init_from_with_explicit_ckpt_path_is_an_error(trained, tmp_path):
    result, _ = trained
    cfg = compose_config(f"init_from={result.best_ckpt}", f"ckpt_path={result.last_ckpt}", log_dir=tmp_path)
    with pytest.raises(UserError, match="give only one of them"):
        pipeline.train(cfg)


def test_existing_run_is_never_overwritten(trained):
    result, logs = trained
    cfg = compose_config("run_id=short", "ckpt_path=null", log_dir=logs)
    with pytest.raises(UserError, match="refusing to overwrite"):
        pipeline.train(cfg)


@pytest.mark.parametrize("content, message", [
    (b"\x00not a zip or pickle", "cannot be read"),
    (None, "not a labformer checkpoint"),
])
def test_corrupt_or_foreign_checkpoint_is_refused(tmp_path, content, message):
    path = tmp_path / "x.ckpt"
    if content is None:
        torch.save({"state_dict": {"w": torch.zeros(1)}}, path)  # a checkpoint, but not ours
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        pipeline.evaluate(compose_config(f"ckpt_path={path}", config="eval"))
    with pytest.raises(UserError, match=message):
        pipeline.train(compose_config(f"init_from={path}", log_dir=tmp_path))


@pytest.mark.parametrize("override, message", [
    ("trainer.max_epochs=abc", "trainer.max_epochs must be"),
    ("model.embed_dim=wide", "model.embed_dim must be an integer"),
    ("+model.embed_dimm=64", "Did you mean model.embed_dim"),
    ("task.lr=fast", "task.lr must be a number"),
    ("data.batch_size=0", "batch_size"),
])
def test_wrong_values_name_the_key(tmp_path, override, message):
    with pytest.raises(UserError, match=message):
        pipeline.train(compose_config(override, log_dir=tmp_path))


def test_model_of_another_task_fails_before_any_data_is_read(tmp_path, monkeypatch):
    registry.register("graph_probe_model", task="graph")(lambda: None)
    monkeypatch.setattr(pipeline, "build_datamodule", lambda cfg: pytest.fail("data was read"))
    try:
        with pytest.raises(UserError, match="does not serve task 'vision'"):
            pipeline.train(compose_config("model.name=graph_probe_model", log_dir=tmp_path))
    finally:  # a throw-away entry: registry-wide tests must never see it
        registry._REGISTRY["backbone"].pop("graph_probe_model")


def test_missing_dataset_names_files_directories_and_urls(tmp_path):
    empty = tmp_path / "empty"
    cfg = compose_config("data=cifar10", f"paths.data_dir={empty}", "data.download=false", log_dir=tmp_path)
    with pytest.raises(UserError) as e:
        pipeline.train(cfg)
    msg = str(e.value)
    assert "cifar-10-python.tar.gz" in msg and str(empty) in msg and "https://" in msg


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    step = VisionTask.step

    def poisoned(self, batch, stage):  # the loss turns NaN in the second epoch
        loss = step(self, batch, stage)
        return loss * float("nan") if stage == "train" and self.current_epoch == 1 else loss

    monkeypatch.setattr(VisionTask, "step", poisoned)
    cfg = compose_config("run_id=nan", "trainer.max_epochs=3", log_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"became nan at global step 41 \(epoch 1, batch 0\)"):
        pipeline.train(cfg)
    last = tmp_path / "runs" / "nan" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_trainer_progress_bar_switch_is_honoured(tmp_path):
    from lightning.pytorch.callbacks import ProgressBar
    from labformer.builders import build_callbacks, build_trainer

    cfg = compose_config("trainer.enable_progress_bar=false", log_dir=tmp_path)
    callbacks = build_callbacks(cfg, tmp_path)
    assert not any(isinstance(c, ProgressBar) for c in callbacks)
    assert build_trainer(cfg, tmp_path, None, callbacks).progress_bar_callback is None


def test_optimizer_and_schedule_options():
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8))
    backbone.num_features = 8
    task = VisionTask(backbone, num_classes=10, optimizer="adam", schedule="constant", weight_decay=5e-4)
    optimizer = task.configure_optimizers()
    assert type(optimizer) is torch.optim.Adam  # L2 in the gradient, on every parameter (biases too)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(task.parameters()))
    with pytest.raises(UserError, match="task.optimizer=sgd is unknown"):
        VisionTask(backbone, num_classes=10, optimizer="sgd")
    with pytest.raises(UserError, match="task.schedule=halving is unknown"):
        VisionTask(backbone, num_classes=10, schedule="halving")  # the time-series family's own
