"""LM evaluation without repeated work: a test split that is the validation split is answered from the
best checkpoint's validation (equal to a real test pass), and task.val_batches estimates validation."""
from __future__ import annotations

import pytest
import torch

from labformer import pipeline
from labformer.errors import UserError

from conftest import compose_config, require_data

SHORT = ["task=lm", "data=tinyshakespeare", "trainer.max_epochs=2", "data.steps_per_epoch=5", "data.val_fraction=0.01",
         "task.sample_tokens=0", "trainer.deterministic=true"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_test_split_equal_to_validation_is_answered_by_the_best_validation(tmp_path, caplog):
    require_data("tinyshakespeare")
    cfg = compose_config(*SHORT, "run_id=same", f"data.cache_dir={tmp_path / 'cache'}", log_dir=tmp_path / "logs")
    with caplog.at_level("INFO", logger="labformer"):
        result = pipeline.train(cfg)
    assert "test split is the validation split" in caplog.text
    again = pipeline.evaluate(compose_config(f"ckpt_path={result.best_ckpt}", "split=test", config="eval"))
    assert set(result.test_metrics) == set(again) == {"test/loss", "test/ppl", "test/bpc"}
    for key, value in again.items():  # a real test pass over the same items gives the same numbers
        assert result.test_metrics[key] == pytest.approx(value, rel=1e-6), key


def test_val_batches_estimates_validation_and_keeps_the_test_exact(tmp_path, caplog):
    require_data("tinyshakespeare")
    cfg = compose_config(*SHORT, "run_id=estimate", "task.val_batches=2", "data.eval_batch_size=4",
                         f"data.cache_dir={tmp_path / 'cache'}", log_dir=tmp_path / "logs")
    with caplog.at_level("INFO", logger="labformer"):
        result = pipeline.train(cfg)
    assert "are estimates from 2 random batches" in caplog.text
    assert "test split is the validation split" not in caplog.text  # the estimate cannot stand in for it
    again = pipeline.evaluate(compose_config(f"ckpt_path={result.best_ckpt}", "split=test", config="eval"))
    assert result.test_metrics["test/loss"] == pytest.approx(again["test/loss"], rel=1e-6)


def test_val_batches_must_be_a_positive_count(tmp_path):
    cfg = compose_config(*SHORT, "run_id=bad", "task.val_batches=0", log_dir=tmp_path / "logs")
    with pytest.raises(UserError, match="task.val_batches=0 must be a number of batches"):
        pipeline.train(cfg)
