"""callbacks.analyse: the analyse command's tools run by a training run on its best weights (in-process runs
of the default vision model on digits, tiny budgets)."""
from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger

from labformer import pipeline
from labformer.analysis.command import analyse
from labformer.builders import build_callbacks
from labformer.callbacks.analysis import Analysis, log_pictures, tool_names
from labformer.errors import UserError

from conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUICK = ["trainer.max_epochs=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def test_the_run_writes_the_commands_attention_maps_of_its_best_checkpoint(tmp_path):
    cfg = compose_config(*QUICK, "callbacks.analyse=[attention]", "run_id=vit", log_dir=tmp_path / "logs")
    result = pipeline.train(cfg)  # the default: vit_nano on digits, with its test pass
    png, npz = result.run_dir / "attention_maps.png", result.run_dir / "attention_maps.npz"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and npz.exists()
    assert result.test_metrics and (result.run_dir / "test_metrics.json").exists()
    by_run = arrays(npz)
    assert sorted(by_run) == [f"layer{i}" for i in range(4)]  # vit_nano: 4 blocks
    assert all(probs.shape == (8, 4, 17, 17) for probs in by_run.values())  # the command's default 8 items

    out = analyse(result.best_ckpt, attention=True, out=tmp_path / "command")
    assert f"wrote {tmp_path / 'command' / 'attention_maps.npz'}" in out
    by_command = arrays(tmp_path / "command" / "attention_maps.npz")
    assert sorted(by_command) == sorted(by_run)
    for key, probs in by_command.items():
        np.testing.assert_allclose(by_run[key], probs, atol=1e-6)


def test_the_best_weights_are_analysed_and_the_trained_module_is_put_back(tmp_path):
    cfg = compose_config(*QUICK, "test=false", "run_id=back", log_dir=tmp_path / "logs")
    result = pipeline.train(cfg)
    from labformer.analysis.rebuild import rebuild

    run = rebuild(result.best_ckpt)
    module, datamodule = run.module, run.datamodule
    with torch.no_grad():  # other weights than the best: the last epoch's, as the module holds them at fit end
        for p in module.parameters():
            p.add_(0.5)
    module.train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    state = torch.get_rng_state()
    trainer = mock.Mock(datamodule=datamodule, fast_dev_run=False, is_global_zero=True, loggers=[])
    trainer.checkpoint_callback.best_model_path = result.best_ckpt
    callback = Analysis(["attention"], tmp_path / "out")
    callback.setup(trainer, module, "fit")
    callback.on_fit_end(trainer, module)
    assert torch.equal(torch.get_rng_state(), state)  # the run's random numbers go on as without the analysis
    by_callback = arrays(tmp_path / "out" / "attention_maps.npz")
    analyse(result.best_ckpt, attention=True, out=tmp_path / "command")
    for key, probs in arrays(tmp_path / "command" / "attention_maps.npz").items():
        np.testing.assert_allclose(by_callback[key], probs, atol=1e-6)
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and module.training
    assert all(p.requires_grad for p in module.parameters())


def test_a_tool_that_does_not_apply_is_refused_before_training(tmp_path):
    cfg = compose_config(*QUICK, "callbacks.analyse=[attention,pairs]", "run_id=pairs", log_dir=tmp_path / "logs")
    with pytest.raises(UserError, match=r"callbacks.analyse: pairs does not apply to this run") as error:
        pipeline.train(cfg)
    message = str(error.value)
    assert "siamese" in message and "Tools that apply to it: attention, atman, project" in message
    assert not list((tmp_path / "logs").rglob("*.ckpt"))  # not one epoch ran


def test_unknown_tool_names_are_refused_with_the_valid_ones(tmp_path):
    cfg = compose_config("callbacks.analyse=[attention,atmann]", log_dir=tmp_path / "logs")
    with pytest.raises(UserError, match=r"unknown callbacks.analyse tool 'atmann'. Did you mean: atman") as error:
        build_callbacks(cfg, tmp_path / "run")
    assert "names: atman, attention, pairs, project" in str(error.value)
    assert tool_names("project") == ["project"] and tool_names(["project", "attention"]) == ["attention", "project"]
    assert not [c for c in build_callbacks(compose_config(), tmp_path / "run") if isinstance(c, Analysis)]


def test_the_pictures_go_to_the_runs_wandb_logger_under_the_commands_keys(tmp_path):
    wandb = mock.Mock(spec=WandbLogger)
    keys = log_pictures([tmp_path / "attention_maps.png", tmp_path / "atman_relevance.png"], [mock.Mock(), wandb])
    assert keys == ["analysis/attention_maps", "analysis/atman_relevance"]
    wandb.log_image.assert_any_call(key="analysis/attention_maps", images=[str(tmp_path / "attention_maps.png")])
