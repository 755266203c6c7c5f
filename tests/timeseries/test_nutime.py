"""NuTime against the paper's definitions on small cases: window normalisation, the NME and its scale weights,
the backbone's outputs for forecasting and classification, and contrastive pretraining -> fine-tuning."""
from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from labformer import pipeline, registry
from labformer.builders import build_datamodule, build_task
from labformer.errors import UserError
from labformer.layers.nme import NumericallyMultiScaledEmbedding, default_scales, scale_weights
from labformer.models.timeseries.nutime import pad_to_windows, window_normalize
from labformer.tasks.timeseries import TimeSeriesTask

from conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["model=nutime", "data=series_classes", "model.dim=32", "model.depth=1", "model.num_heads=4",
        "model.stats_dim=8", "model.denormalize=false", "data.num_train=48", "data.num_val=16", "data.num_test=16",
        "data.batch_size=16", "data.normalize=false", "trainer.max_epochs=1"]


def test_window_normalisation_gives_zero_mean_unit_std_and_keeps_each_windows_stats():
    torch.manual_seed(0)
    # 4 windows of 8 at very different levels and spreads, one of them flat
    levels, spreads = torch.tensor([-3e3, 0.0, 2e-3, 7.0]), torch.tensor([5e2, 1.0, 1e-4, 0.0])
    x = (levels[:, None] + spreads[:, None] * torch.randn(4, 8)).reshape(1, 32).double()
    shape, mean, std = window_normalize(x, window=8)
    assert shape.shape == (1, 4, 8) and mean.shape == std.shape == (1, 4)
    windows = x.view(4, 8)
    torch.testing.assert_close(mean[0], windows.mean(1))
    torch.testing.assert_close(std[0], windows.std(1, unbiased=False))
    moving = shape[0, :3]  # the three windows that move
    torch.testing.assert_close(moving.mean(-1), torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(moving.std(-1, unbiased=False), torch.ones(3, dtype=torch.float64))
    assert std[0, 3] == 0 and torch.equal(shape[0, 3], torch.zeros(8, dtype=torch.float64))  # flat: no shape
    # the level and spread come back from the token's stats: shape * std + mean is the window
    torch.testing.assert_close(shape[0] * std[0, :, None] + mean[0, :, None], windows)


def test_a_length_off_the_window_grid_is_left_padded_with_the_first_value():
    x = torch.arange(1.0, 41.0)[None]  # L=40, W=16 -> 3 windows, 8 steps of padding
    padded = pad_to_windows(x, 16)
    assert padded.shape == (1, 48)
    assert torch.equal(padded[0, :8], torch.ones(8)) and torch.equal(padded[0, 8:], x[0])  # recent end aligned


def test_scale_weights_equal_the_papers_formula_by_hand():
    scales = [0.1, 1.0, 10.0, 100.0]
    eps = 1e-6
    for x in (5.0, -5.0, 0.02, 3e4):
        fit = [1 / (abs(math.log(abs(x) / e + eps)) + eps) for e in scales]
        expected = [f / sum(fit) for f in fit]
        got = scale_weights(torch.tensor(x, dtype=torch.float64), torch.tensor(scales, dtype=torch.float64), eps)
        assert got.tolist() == pytest.approx(expected, rel=1e-12)
    # |x| on a scale: that branch takes (almost) everything; x = 0 favours no scale
    on_scale = scale_weights(torch.tensor(10.0), torch.tensor(scales))
    assert on_scale[2] > 0.999
    zero = scale_weights(torch.tensor(0.0), torch.tensor(scales))
    torch.testing.assert_close(zero, torch.full((4,), 0.25))
    assert default_scales() == [10.0 ** k for k in range(-4, 5)]  # the paper's 1e-4 .. 1e4


@torch.no_grad()
def relative_distance(embed, a: float, b: float) -> float:
    ea, eb = embed(torch.tensor([a])), embed(torch.tensor([b]))
    return float((ea - eb).norm() / ea.norm())


@pytest.mark.parametrize("bound", ["layernorm", "tanh", "clip"])
def test_nme_is_finite_and_tells_values_apart_across_orders_of_magnitude(bound):
    torch.manual_seed(0)
    nme = NumericallyMultiScaledEmbedding(32, bound=bound)
    single = NumericallyMultiScaledEmbedding(32, scales=[1.0], bound=bound)  # one linear map of the raw value
    values = torch.tensor([0.0, 1e-9, -1e-4, 1e-3, 2e-3, 1.0, -2.0, 1e3, 2e3, 1e6, 1e9])
    out = nme(values)
    assert out.shape == (11, 32) and torch.isfinite(out).all()
    for a, b in ((1e-4, 2e-4), (1e-3, 2e-3), (1e3, 2e3), (1e4, 2e4), (1e3, -1e3)):  # the paper's range
        assert relative_distance(nme, a, b) > 0.2, (a, b)
    # The single scale saturates for large values and is flat for tiny ones: those pairs look alike.
    assert relative_distance(single, 1e3, 2e3) < 2e-3
    assert relative_distance(single, 1e6, 2e6) < 1e-4
    assert relative_distance(single, 1e-3, 2e-3) < 1e-2
    assert relative_distance(single, 1.0, 2.0) > 0.1  # ... while its own scale is resolved


def build_nutime(**kwargs):
    settings = dict(dim=32, depth=2, num_heads=4, stats_dim=8, dropout=0.0, **kwargs)
    return registry.create("timeseries", "nutime", **settings)


@pytest.mark.parametrize("head", ["cls", "flatten"])
def test_forecast_and_classification_shapes(head):
    torch.manual_seed(0)
    backbone = build_nutime(lookback=40, horizon=12, channels=3, head=head).eval()
    x = 100.0 * torch.randn(5, 40, 3) + 1e3  # raw values far from unit scale
    y = backbone(x)
    assert y.shape == (5, 12, 3) and torch.isfinite(y).all()
    assert backbone.features(x).shape == (5, 3, 32)
    task = TimeSeriesTask(build_nutime(lookback=40, horizon=6, channels=3, head=head, denormalize=False),
                          horizon=6, channels=3, objective="classification", num_classes=4)
    logits = task(x)
    assert logits.shape == (5, 4) and torch.isfinite(logits).all()


def test_channels_are_independent_sequences_and_forecasts_follow_the_lookback_level():
    torch.manual_seed(0)
    backbone = build_nutime(lookback=32, horizon=8, channels=2, denormalize=False).eval()
    x = torch.randn(3, 32, 2)
    moved = x.clone()
    moved[..., 0] = moved[..., 0] * 50 + 7  # only channel 0 changes
    a, b = backbone(x), backbone(moved)
    torch.testing.assert_close(a[..., 1], b[..., 1])
    assert not torch.allclose(a[..., 0], b[..., 0])
    # denormalize: the head's output comes back in units of each channel's lookback mean/std
    denorm = build_nutime(lookback=32, horizon=8, channels=2).eval()
    denorm.load_state_dict(backbone.state_dict())
    mean, std = x.mean(1, keepdim=True), torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)
    torch.testing.assert_close(denorm(x), a * std + mean)


def test_bad_settings_name_the_fix():
    with pytest.raises(UserError, match="model.head"):
        build_nutime(lookback=32, horizon=8, channels=1, head="mean")
    with pytest.raises(UserError, match="model.bound"):
        build_nutime(lookback=32, horizon=8, channels=1, bound="sigmoid")


def test_contrastive_pretraining_then_fine_tuning_starts_from_the_pretrained_backbone(tmp_path):
    pre = pipeline.train(compose_config("task=contrastive", "objective=infonce", *TINY, "run_id=pretrain",
                                        log_dir=tmp_path))
    assert pre.last_ckpt and "test/probe_acc" in pre.test_metrics  # series_classes' labels reach the probe
    pretrained = {k[len("backbone."):]: v for k, v in
                  torch.load(pre.last_ckpt, map_location="cpu", weights_only=True)["state_dict"].items()
                  if k.startswith("backbone.")}
    # lr=0: one epoch of fine-tuning leaves the loaded weights exactly as loaded
    finetune = ["task=timeseries", *TINY, "seed=1", "task.lr=0", "task.plot_windows=0"]
    tuned = pipeline.train(compose_config(*finetune, f"init_from={pre.last_ckpt}", "run_id=finetune",
                                          log_dir=tmp_path))
    assert "test/acc" in tuned.test_metrics
    state = torch.load(tuned.last_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert {k[len("backbone."):] for k in state if k.startswith("backbone.")} == set(pretrained)
    for name, value in pretrained.items():
        assert torch.equal(state[f"backbone.{name}"], value), name
    assert state["head.weight"].shape == (4, 16)  # the classification head is new: 4 classes x (H=16 * C=1)
    # ... and not because a fresh model at this seed happens to start there
    cfg = compose_config(*finetune, log_dir=tmp_path)
    L.seed_everything(1)
    fresh = build_task(cfg, build_datamodule(cfg), {}).backbone.state_dict()
    assert not all(torch.equal(fresh[k], v) for k, v in pretrained.items())
    # a backbone of other sizes is refused by name
    with pytest.raises(UserError, match="do not fit"):
        pipeline.train(compose_config(*finetune, "model.dim=16", f"init_from={pre.last_ckpt}", "run_id=bad",
                                      log_dir=tmp_path))
