"""Every registered time-series backbone, built from its config, at two sizes: x[B,L,C] -> forecast[B,H,C]."""
from __future__ import annotations

import pytest
import torch
from labformer import registry
from labformer.config_store import entry_config
from labformer.layers.revin import RevIN

MODELS = registry.list_models(task="timeseries")


def build_from_config(name: str, lookback: int, horizon: int, channels: int):
    kwargs = entry_config(registry.get(name, task="timeseries"))
    assert kwargs.pop("name") == name
    return registry.create("timeseries", name, lookback=lookback, horizon=horizon, channels=channels, **kwargs)


def test_the_family_has_its_backbones():
    assert {"dlinear", "itransformer", "samformer", "patchtst", "transformer", "lmuformer"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("lookback, horizon, channels", [(96, 24, 7), (40, 13, 1)])
def test_backbone_maps_lookback_to_horizon(name, lookback, horizon, channels):
    torch.manual_seed(0)
    model = build_from_config(name, lookback, horizon, channels).eval()
    out = model(torch.randn(3, lookback, channels))
    assert out.shape == (3, horizon, channels)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("affine", [True, False])
def test_revin_is_exactly_invertible(affine):
    torch.manual_seed(0)
    revin = RevIN(5, affine=affine)
    if affine:  # a trained-looking affine map, not the identity
        revin.weight.data.uniform_(0.5, 2.0)
        revin.bias.data.normal_()
    x = torch.randn(4, 48, 5, dtype=torch.float64) * 30 + 100
    z, stats = revin.normalize(x)
    assert torch.allclose(z.mean(1), revin.bias.double() if affine else torch.zeros(4, 5, dtype=torch.float64),
                          atol=1e-9)
    torch.testing.assert_close(revin.denormalize(z, stats), x, rtol=1e-9, atol=1e-9)


def test_lmu_memory_convolution_equals_the_recurrence():
    from labformer.models.timeseries.lmuformer import LMUBlock, legendre_system

    torch.manual_seed(0)
    block = LMUBlock(dim=8, memory_dim=2, order=6, theta=20.0, length=30, ffn_dim=8, dropout=0.0)
    u = torch.randn(3, 30, 2, dtype=torch.float64)
    a_d, b_d = legendre_system(6, 20.0)
    state, rows = torch.zeros(3, 2, 6, dtype=torch.float64), []
    for t in range(30):  # m_t = A_d m_{t-1} + B_d u_t, step by step
        state = state @ a_d.T + u[:, t, :, None] * b_d
        rows.append(state.reshape(3, -1))
    torch.testing.assert_close(block.memory(u.float()).double(), torch.stack(rows, 1), atol=1e-4, rtol=1e-4)
