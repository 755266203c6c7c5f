"""Group attention (RITA) against its definition: exact when every key is its own group or a group's
keys are identical, the centroid softmax otherwise, close on clustered keys, adaptive G."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from labformer import registry
from labformer.errors import UserError
from labformer.layers.attention import build_attention
from labformer.layers.attention.group import kmeans
from labformer.models.timeseries.blocks import SelfAttention

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(name: str = "group", dim: int = 16, heads: int = 2, max_len: int = 32, **options):
    torch.manual_seed(0)
    return build_attention(name, dim=dim, num_heads=heads, causal=False, max_len=max_len, **options).eval()


def softmax_twin(attn):
    """Registry softmax attention with the same q/k/v and output projections as `attn`."""
    twin = make("softmax", dim=attn.dim, heads=attn.num_heads, max_len=attn.max_len)
    twin.load_state_dict({k: v for k, v in attn.state_dict().items() if k != "num_groups"})
    return twin


def clustered(seed: int, n: int = 32, clusters: int = 4, d: int = 8, noise: float = 0.05):
    """q, k, v [2,2,n,d] whose keys lie near `clusters` centres, in shuffled order."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(2, 2, clusters, d, generator=g) * 2
    label = torch.randint(0, clusters, (2, 2, n), generator=g)
    k = centres.gather(2, label[..., None].expand(-1, -1, -1, d)) + noise * torch.randn(2, 2, n, d, generator=g)
    return torch.randn(2, 2, n, d, generator=g), k, torch.randn(2, 2, n, d, generator=g)


def test_registered_as_a_non_causal_o_ng_mixer():
    meta = registry.get("group", kind="attention").meta
    assert meta["causal"] is False and meta["complexity"] == "O(N G)"


@pytest.mark.parametrize("t", [32, 9])
def test_one_group_per_key_is_softmax_attention_with_the_same_weights(t):
    attn = make(groups=t)
    x = torch.randn(3, t, 16)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), softmax_twin(attn)(x), atol=1e-5, rtol=1e-5)
    # More groups than tokens: every key is its own group as well.
    attn = make(groups=64)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), softmax_twin(attn)(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("groups", [4, 16])
def test_identical_keys_in_a_group_give_exact_softmax(groups):
    attn = make(groups=groups)
    g = torch.Generator().manual_seed(3)
    q, v = torch.randn(2, 2, 2, 24, 8, generator=g, dtype=torch.float64)
    distinct = torch.randn(2, 2, 4, 8, generator=g, dtype=torch.float64)
    k = distinct[:, :, torch.randperm(24, generator=g) % 4]  # 4 distinct keys, 6 copies each, shuffled
    out = attn.attend(q, k, v)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("groups", [3, 8])
def test_output_is_softmax_over_keys_replaced_by_their_group_centroid(groups):
    attn = make(groups=groups)
    q, k, v = torch.randn(3, 2, 2, 20, 8, dtype=torch.float64)
    assign = kmeans(k, groups, attn.iters)
    onehot = F.one_hot(assign, groups).double()  # [B,H,N,G]
    centroid = (onehot.transpose(-1, -2) @ k) / onehot.sum(-2)[..., None].clamp_min(1)
    stand_in = onehot @ centroid  # key j -> c_g(j)
    expected = (q @ stand_in.transpose(-1, -2) / math.sqrt(8)).softmax(-1) @ v
    torch.testing.assert_close(attn.attend(q, k, v), expected)


def test_fewer_groups_approximate_clustered_keys_closely():
    for seed in range(5):
        q, k, v = clustered(seed)
        exact = F.scaled_dot_product_attention(q, k, v)
        err = {g: ((make(groups=g).attend(q, k, v) - exact).norm() / exact.norm()).item() for g in (1, 4, 8)}
        assert err[4] < 0.1 and err[8] < 0.1, err  # one group per cluster suffices
        assert err[1] > 3 * err[4], err  # ... and is needed: one group for all keys is far off


def test_fewer_groups_approximate_a_smooth_series():
    t = torch.linspace(0, 4 * math.pi, 64)
    x = torch.stack([torch.sin(t * (i + 1) / 4 + i) for i in range(16)], -1)[None].repeat(2, 1, 1)
    errors = []
    for groups in (4, 16):
        attn = make(groups=groups, max_len=64)
        with torch.no_grad():
            exact = softmax_twin(attn)(x)
            errors.append(((attn(x) - exact).norm() / exact.norm()).item())
    assert errors[1] < errors[0] < 0.1, errors


def test_gradients_reach_the_query_key_value_and_output_projections():
    attn = make(groups=4).train()
    attn(torch.randn(2, 16, 16)).pow(2).sum().backward()
    w = attn.qkv.weight.grad
    for name, part in zip("qkv", w.split(16)):
        assert part.abs().sum() > 0 and torch.isfinite(part).all(), name
    assert attn.out_proj.weight.grad.abs().sum() > 0


def test_adaptive_groups_change_in_training_only_and_survive_a_checkpoint():
    x = torch.randn(2, 32, 16)
    attn = make(groups=4, adaptive=True, epsilon=1e-4)
    with torch.no_grad():
        attn(x)
    assert int(attn.num_groups) == 4  # eval: never adapted
    attn.train()
    with torch.no_grad():
        for expected in (8, 16, 32):  # the bound is far above epsilon: every group split
            attn(x)
            assert int(attn.num_groups) == expected
    restored = make(groups=4, adaptive=True, epsilon=1e-4)
    restored.load_state_dict(attn.state_dict())
    assert int(restored.num_groups) == 32
    with torch.no_grad():
        attn(x)  # G = N is exact (bound 0), so fewer groups are tried next
    assert int(attn.num_groups) == 16
    loose = make(groups=16, adaptive=True, epsilon=1e6).train()
    with torch.no_grad():
        loose(x)
    assert int(loose.num_groups) == 8  # far below epsilon: pairs merged
    fixed = make(groups=4).train()
    with torch.no_grad():
        fixed(x)
    assert int(fixed.num_groups) == 4  # adaptive=false keeps G


@pytest.mark.parametrize("option, value", [("groups", 0), ("iters", -1), ("epsilon", 0.0)])
def test_bad_settings_name_the_setting(option, value):
    with pytest.raises(UserError, match=f"model.attention_kwargs.{option}"):
        make(**{option: value})


@pytest.mark.parametrize("name, sizes", [("transformer", dict(lookback=32, horizon=8, channels=3)),
                                         ("itransformer", dict(lookback=32, horizon=8, channels=7))])
def test_a_timeseries_backbone_trains_a_step_with_group_attention(name, sizes):
    torch.manual_seed(0)
    model = registry.create("timeseries", name, **sizes, dim=16, depth=2, num_heads=2, ffn_dim=32,
                            attention="group", attention_kwargs={"groups": 3, "adaptive": True})
    assert all(type(layer.attn).__name__ == "GroupAttention" for layer in model.layers)
    model.train()
    x, y = torch.randn(4, sizes["lookback"], sizes["channels"]), torch.randn(4, 8, sizes["channels"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.mse_loss(model(x), y)
    loss.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert torch.isfinite(loss) and not silent, silent
    opt.step()
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert "layers.0.attn.num_groups" in model.state_dict()


@pytest.mark.parametrize("name", ["transformer", "itransformer"])
def test_the_default_keeps_the_builtin_softmax_layer(name):
    model = registry.create("timeseries", name, lookback=16, horizon=4, channels=3, dim=16, num_heads=2)
    assert all(type(layer.attn) is SelfAttention for layer in model.layers)
    assert "layers.0.attn.proj.weight" in model.state_dict()  # old checkpoints keep loading
    with pytest.raises(UserError, match="model.attention_kwargs"):
        registry.create("timeseries", name, lookback=16, horizon=4, channels=3, attention_kwargs={"groups": 4})
