"""compile=true: the backbone is compiled in place, so checkpoints keep the plain module's keys and load
into an uncompiled model (eval.py) and back (init_from), and every holder of the backbone runs it compiled."""
from __future__ import annotations

import pytest
import torch

from labformer import pipeline
from labformer.builders import build_datamodule, build_task

from conftest import compose_config

SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
         "trainer.deterministic=true"]


def test_a_compiled_run_saves_plain_keys_loads_plain_weights_and_evaluates_uncompiled(tmp_path):
    plain = pipeline.train(compose_config("run_id=plain", *SHORT, "test=false", log_dir=tmp_path))
    compiled = pipeline.train(compose_config("run_id=compiled", "compile=true", f"init_from={plain.last_ckpt}", *SHORT,
                                             log_dir=tmp_path))
    keys = set(torch.load(compiled.best_ckpt, map_location="cpu", weights_only=True)["state_dict"])
    assert keys == set(torch.load(plain.last_ckpt, map_location="cpu", weights_only=True)["state_dict"])
    assert not [k for k in keys if "_orig_mod" in k]
    evaluated = pipeline.evaluate(compose_config(f"ckpt_path={compiled.best_ckpt}", config="eval"))
    assert evaluated == pytest.approx(compiled.test_metrics, rel=1e-5)


@pytest.mark.parametrize("overrides", [["task=vision"], ["task=contrastive", "objective=simsiam"]])
def test_compiling_reaches_every_holder_of_the_backbone(overrides, tmp_path):
    cfg = compose_config(*overrides, log_dir=tmp_path)
    module = build_task(cfg, build_datamodule(cfg), {})
    module.backbone.compile()  # what pipeline.train does for compile=true; compiles on first call only
    holders = [module.backbone] + ([module.encoder.backbone] if hasattr(module, "encoder") else [])
    assert all(h is module.backbone and h._compiled_call_impl is not None for h in holders)
    assert not [k for k in module.state_dict() if "_orig_mod" in k]
