"""Every attention variant against its definition: causality, exact equivalences, patterns."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from labformer import registry
from labformer.errors import UserError
from labformer.layers.attention import build_attention, causal_attention_names
from labformer.layers.attention.kernels import linear_attention, quadratic_attention
from labformer.layers.attention.performer import favor_features, orthogonal_features
from labformer.layers.attention.sparse import sparse_mask

ATTENTION = registry.list_models(kind="attention")
CAUSAL = causal_attention_names()
NON_CAUSAL = [n for n in ATTENTION if n not in CAUSAL]
# Small chunks so the chunked prefix-sum path of the linear variants is exercised.
OPTIONS = {"performer": {"chunk": 4}, "linear": {"chunk": 4}, "sparse": {"stride": 4}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(before)


def make(name: str, causal: bool, dim: int = 16, heads: int = 2, max_len: int = 32, **kw):
    torch.manual_seed(0)
    return build_attention(name, dim=dim, num_heads=heads, causal=causal, max_len=max_len,
                           **{**OPTIONS.get(name, {}), **kw}).eval()


def test_registry_metadata_declares_causality_and_complexity():
    assert {"softmax", "sparse", "performer", "linear", "persistent_memory"} <= set(CAUSAL)
    assert {"fnet", "linformer"} <= set(NON_CAUSAL)
    for entry in registry.entries("attention"):
        assert isinstance(entry.meta.get("causal"), bool) and entry.meta.get("complexity"), entry.name


@pytest.mark.parametrize("name", CAUSAL)
def test_changing_a_future_token_never_changes_earlier_outputs(name):
    attn = make(name, causal=True)
    x = torch.randn(2, 19, 16)
    y = x.clone()
    y[:, 11:] = torch.randn(2, 8, 16) * 3
    with torch.no_grad():
        a, b = attn(x), attn(y)
    assert torch.equal(a[:, :11], b[:, :11]), (a[:, :11] - b[:, :11]).abs().max()
    assert not torch.allclose(a[:, 11:], b[:, 11:])


@pytest.mark.parametrize("name", NON_CAUSAL)
def test_non_causal_mixers_refuse_causal_use_and_name_the_causal_ones(name):
    with pytest.raises(UserError) as e:
        make(name, causal=True)
    assert "cannot be causal" in str(e.value) and all(c in str(e.value) for c in CAUSAL)


@pytest.mark.parametrize("name", ATTENTION)
def test_shapes_and_shorter_sequences(name):
    attn = make(name, causal=name in CAUSAL)
    for t in (1, 7, 32):
        out = attn(torch.randn(3, t, 16))
        assert out.shape == (3, t, 16) and torch.isfinite(out).all()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("t, chunk", [(13, 4), (16, 16), (5, 64)])
def test_chunked_linear_attention_equals_its_quadratic_form(causal, t, chunk):
    torch.manual_seed(0)
    q, k = torch.rand(2, 3, t, 6, dtype=torch.float64), torch.rand(2, 3, t, 6, dtype=torch.float64)
    v = torch.randn(2, 3, t, 5, dtype=torch.float64)
    for normalize in (True, False):
        torch.testing.assert_close(linear_attention(q, k, v, causal, normalize, chunk=chunk),
                                   quadratic_attention(q, k, v, causal, normalize))


@pytest.mark.parametrize("feature_map, normalization", [
    ("elu", "denominator"), ("relu", "denominator"), ("hedgehog", "denominator"),
    ("elu", "rmsnorm"), ("identity", "rmsnorm")])
@pytest.mark.parametrize("causal", [True, False])
def test_linear_attention_module_equals_quadratic_form(feature_map, normalization, causal):
    attn = make("linear", causal, feature_map=feature_map, normalization=normalization).double()
    q, k, v = torch.randn(3, 2, 2, 11, 8, dtype=torch.float64)
    out = attn.attend(q, k, v)
    expected = quadratic_attention(attn.phi(q), attn.phi(k), v, causal, normalize=normalization == "denominator")
    if normalization == "rmsnorm":
        expected = attn.out_norm(expected)
    torch.testing.assert_close(out, expected)


def test_identity_feature_map_needs_rmsnorm():
    with pytest.raises(UserError, match="normalization=rmsnorm"):
        make("linear", True, feature_map="identity")


@pytest.mark.parametrize("causal", [True, False])
def test_performer_approaches_softmax_attention_as_features_grow(causal):
    d, t = 8, 24
    torch.manual_seed(1)
    q, k, v = torch.randn(3, 1, 2, t, d, dtype=torch.float64) * 0.5
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if causal:
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    exact = scores.softmax(-1) @ v
    errors = []
    for m in (4, 32, 256, 2048):
        err = 0.0
        for seed in range(5):
            w = orthogonal_features(m, d, torch.Generator().manual_seed(seed)).double()
            s = d ** -0.25
            approx = linear_attention(favor_features(q * s, w, True, causal), favor_features(k * s, w, False, causal),
                                      v, causal, eps=0.0, chunk=8)
            err += (approx - exact).pow(2).mean().sqrt().item() / 5
        errors.append(err)
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 0.2 * errors[0], errors


def test_orthogonal_features_are_orthogonal_within_blocks():
    w = orthogonal_features(12, 4, torch.Generator().manual_seed(0))
    block = w[:4] / w[:4].norm(dim=1, keepdim=True)
    torch.testing.assert_close(block @ block.T, torch.eye(4), atol=1e-5, rtol=0)


@pytest.mark.parametrize("pattern, stride, summary", [("strided", 3, 1), ("fixed", 4, 1), ("fixed", 4, 2)])
@pytest.mark.parametrize("causal", [True, False])
def test_sparse_masks_equal_their_defined_pattern(pattern, stride, summary, causal):
    t = 13
    mask = sparse_mask(t, pattern, stride, summary, causal)
    for i in range(t):
        for j in range(t):
            if pattern == "strided":
                allowed = abs(i - j) < stride or (i - j) % stride == 0
            else:
                allowed = i // stride == j // stride or j % stride >= stride - summary
            assert bool(mask[i, j]) == (allowed and (j <= i or not causal)), (i, j)


def test_sparse_attention_is_softmax_restricted_to_the_mask():
    attn = make("sparse", True, pattern="fixed", stride=4, summary=1)
    q, k, v = torch.randn(3, 1, 2, 10, 8)
    mask = sparse_mask(10, "fixed", 4, 1, True)
    scores = (q @ k.transpose(-1, -2) / math.sqrt(8)).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(attn.attend(q, k, v), scores.softmax(-1) @ v)


def test_persistent_memory_is_visible_to_every_position():
    attn = make("persistent_memory", True, num_slots=3)
    q, k, v = torch.randn(3, 1, 2, 5, 8)
    keys = torch.cat([attn.memory_k[None], k], 2)
    values = torch.cat([attn.memory_v[None], v], 2)
    scores = q @ keys.transpose(-1, -2) / math.sqrt(8)
    allowed = torch.cat([torch.ones(5, 3, dtype=torch.bool), torch.ones(5, 5, dtype=torch.bool).tril()], 1)
    expected = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ values
    torch.testing.assert_close(attn.attend(q, k, v), expected)


def test_fnet_is_the_real_part_of_the_2d_fourier_transform():
    x = torch.randn(2, 6, 4)
    expected = torch.fft.fft(torch.fft.fft(x, dim=-1), dim=-2).real / (6 * 4) ** 0.5
    torch.testing.assert_close(make("fnet", False)(x), expected, atol=1e-5, rtol=1e-5)


def test_linformer_with_identity_projections_is_softmax_attention():
    attn = make("linformer", False, max_len=6, proj_len=6)
    with torch.no_grad():
        attn.proj_k.copy_(torch.eye(6))
        attn.proj_v.copy_(torch.eye(6))
    q, k, v = torch.randn(3, 2, 2, 6, 8)
    torch.testing.assert_close(attn.attend(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_unknown_attention_lists_close_matches_and_bad_option_names_the_key():
    with pytest.raises(UserError, match="Did you mean: softmax"):
        make("sofmax", True)
    with pytest.raises(UserError, match="model.attention_kwargs.num_feature .*Did you mean"):
        make("performer", True, num_feature=8)


def test_simplicial_attention_matches_its_trilinear_definition():
    attn = make("simplicial", True).double()
    x = torch.randn(1, 4, 16, dtype=torch.float64)
    q, k, v = attn.qkv(x).view(1, 4, 3, 2, 8).permute(2, 0, 3, 1, 4)
    k2, v2 = attn.kv2(x).view(1, 4, 2, 2, 8).permute(2, 0, 3, 1, 4)
    out = torch.zeros(1, 2, 4, 8, dtype=torch.float64)
    for h in range(2):
        for i in range(4):
            pairs = [(j, kk) for j in range(i + 1) for kk in range(i + 1)]
            logits = torch.stack([(q[0, h, i] * k[0, h, j] * k2[0, h, kk]).sum() / math.sqrt(8) for j, kk in pairs])
            weights = logits.softmax(0)
            out[0, h, i] = sum(w * v[0, h, j] * v2[0, h, kk] for w, (j, kk) in zip(weights, pairs))
    expected = attn.out_proj(out.transpose(1, 2).reshape(1, 4, 16))
    torch.testing.assert_close(attn(x), expected)
