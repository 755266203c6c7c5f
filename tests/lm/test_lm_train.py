"""Short in-process runs of `task=lm` through the real config tree and pipeline."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from labformer import pipeline
from labformer.errors import UserError
from labformer.utils.checkpoint_io import read_checkpoint

from conftest import compose_config


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine one thread is several times faster
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """The default LM (GPT on the embedded python_docs corpus), 2 short epochs."""
    tmp = tmp_path_factory.mktemp("lm")
    cfg = compose_config("task=lm", "run_id=lm", "logger=csv", "trainer.max_epochs=2", "data.steps_per_epoch=25",
                         "task.sample_tokens=20", "trainer.deterministic=true", f"data.cache_dir={tmp / 'cache'}",
                         log_dir=tmp / "logs")
    return pipeline.train(cfg), tmp


def test_default_lm_learns_and_reports_loss_ppl_bpc(lm_run):
    result, _ = lm_run
    m = result.test_metrics
    assert m["test/loss"] < math.log(98) - 1.0, m  # well below a uniform guess over the 98 symbols
    assert m["test/ppl"] == pytest.approx(math.exp(m["test/loss"]), rel=1e-5)
    assert m["test/bpc"] == pytest.approx(m["test/loss"] / math.log(2), rel=1e-5)  # characters = tokens
    assert result.monitor_value is not None


def test_run_logs_tokens_per_second_and_text_samples(lm_run):
    result, _ = lm_run
    rows = list(csv.DictReader(open(next(result.run_dir.rglob("metrics.csv")))))
    speeds = [float(r["perf/train_tokens_per_sec"]) for r in rows if r.get("perf/train_tokens_per_sec")]
    assert len(speeds) == 2 and min(speeds) > 0
    samples = (result.run_dir / "samples.txt").read_text()
    assert samples.count("=== step") == 2  # one per validation (not during the sanity check)


def test_eval_from_checkpoint_matches_the_test_metrics(lm_run):
    result, tmp = lm_run
    cfg = compose_config(f"ckpt_path={result.best_ckpt}", config="eval")
    assert pipeline.evaluate(cfg) == pytest.approx(result.test_metrics, rel=1e-6)


def test_non_causal_mixer_for_causal_lm_is_a_user_error(tmp_path):
    cfg = compose_config("task=lm", "model.attention=fnet", f"data.cache_dir={tmp_path}", log_dir=tmp_path)
    with pytest.raises(UserError, match="cannot be causal.*softmax"):
        pipeline.train(cfg)
    assert not list(tmp_path.glob("*.bin"))  # failed before any text was tokenised


@pytest.mark.parametrize("attention", ["fnet", "linformer"])
def test_classification_mode_trains_non_causal_mixers(tmp_path, attention):
    cfg = compose_config("experiment=markov_fnet", f"model.attention={attention}", "trainer.max_epochs=6",
                         "data.train_size=640", "data.eval_size=160", "model.dim=32", "model.depth=1",
                         "task.lr=5e-3", "task.warmup_steps=5", log_dir=tmp_path)
    result = pipeline.train(cfg)
    m = result.test_metrics  # chance: accuracy 0.25, loss ln 4 (FNet learns slowest: few steps here)
    assert m["test/acc"] > 0.3 and m["test/loss"] < math.log(4) - 0.05, m


def test_ngpt_runs_and_its_checkpoint_is_on_the_sphere(tmp_path):
    cfg = compose_config("task=lm", "model=ngpt", "model.depth=2", "model.dim=32", "trainer.max_epochs=1",
                         "data.steps_per_epoch=5", "task.sample_tokens=0", "task.weight_decay=0.0",
                         f"data.cache_dir={tmp_path / 'cache'}", log_dir=tmp_path)
    result = pipeline.train(cfg)
    state = read_checkpoint(result.last_ckpt)["state_dict"]
    for key in ("backbone.token_embedding.weight", "head.weight", "backbone.blocks.0.qkv.weight"):
        torch.testing.assert_close(state[key].norm(dim=1), torch.ones(state[key].shape[0]))
    torch.testing.assert_close(state["backbone.blocks.1.attn_out.weight"].norm(dim=0), torch.ones(32))
