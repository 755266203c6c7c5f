"""CRATE (Yu et al. 2023) and MONet (Cheng et al. 2024) against their papers' equations on small cases.

Tokens are columns (Z in R^{d x N}) in the hand computations, as in the papers; the modules
hold them as rows."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from labformer import registry
from labformer.errors import UserError
from labformer.models.vision.crate import CRATE, ISTA, MSSA, CRATELayer
from labformer.models.vision.monet import MONet, MuLayer, PolyBlock, spatial_shift


def test_ista_step_is_the_hand_computed_formula():
    torch.manual_seed(0)
    eta, lam = 0.3, 0.2
    ista = ISTA(3, step_size=eta, lambd=lam)
    tokens = torch.randn(2, 4, 3)  # [B, N, d]
    D = ista.dictionary.detach()
    for b in range(2):
        Y = tokens[b].T  # [d, N]
        expected = torch.relu(Y + eta * D.T @ (Y - D @ Y) - eta * lam)
        torch.testing.assert_close(ista(tokens)[b].T, expected)
    # Sparsity: a larger lambda shifts every pre-activation further down, so more codes are zero.
    zeros = (ista(tokens) == 0).sum()
    ista.lambd = 5.0
    assert (ista(tokens) == 0).sum() > zeros


@pytest.mark.parametrize("heads", [1, 2])
def test_mssa_shares_one_projection_and_is_the_explicit_formula(heads):
    torch.manual_seed(0)
    d, n = 4, 5
    mssa = MSSA(d, heads)
    # One projection U^T for query, key and value; the output map is its own layer.
    assert {name for name, _ in mssa.named_parameters()} == {"subspaces.weight", "proj.weight", "proj.bias"}
    assert mssa.subspaces.weight.shape == (d, d)
    p = d // heads
    tokens = torch.randn(2, n, d)
    U = [mssa.subspaces.weight.detach()[k * p:(k + 1) * p].T for k in range(heads)]  # U_k in R^{d x p}
    for b in range(2):
        Z = tokens[b].T
        ssa = []
        for U_k in U:
            W = U_k.T @ Z  # [p, N]
            ssa.append(W @ torch.softmax(W.T @ W * p ** -0.5, dim=0))  # column j: softmax over tokens i
        expected = mssa.proj.weight.detach() @ torch.cat(ssa) + mssa.proj.bias.detach()[:, None]
        torch.testing.assert_close(mssa(tokens)[b].T, expected)


def test_crate_layer_is_ista_of_ln_of_mssa_residual():
    torch.manual_seed(0)
    layer = CRATELayer(8, num_heads=2, step_size=0.1, lambd=0.1)
    z = torch.randn(2, 5, 8)
    z_half = z + layer.attn(layer.norm1(z))
    torch.testing.assert_close(layer(z), layer.ista(layer.norm2(z_half)))  # no residual around ISTA
    assert (layer(z) >= 0).all()


def test_crate_rejects_bad_settings():
    with pytest.raises(UserError, match="num_heads"):
        CRATE(embed_dim=10, num_heads=3)
    with pytest.raises(UserError, match="step_size"):
        CRATE(step_size=0.0)
    with pytest.raises(UserError, match="patch_size"):
        CRATE(img_size=8, patch_size=16)


def test_mu_layer_is_the_multilinear_formula_after_its_norm():
    torch.manual_seed(0)
    layer = MuLayer(dim=4, hidden=6, rank=2)
    x = torch.randn(2, 3, 3, 4)  # [B, H, W, d]
    A, B, D, C = (getattr(layer, k).weight.detach() for k in "ABDC")
    assert A.shape == (6, 4) and D.shape == (2, 4) and B.shape == (6, 2) and C.shape == (4, 6)
    n = layer.norm(x)
    for b, i, j in [(0, 0, 0), (1, 2, 1), (0, 1, 2)]:
        v = n[b, i, j]
        expected = C @ ((A @ v) * (B @ D @ v) + A @ v) + layer.C.bias.detach()
        torch.testing.assert_close(layer(x)[b, i, j], expected)


def test_poly_block_is_two_residual_mu_layers_the_second_shifted():
    torch.manual_seed(0)
    block = PolyBlock(dim=8, hidden=12, rank=3)
    x = torch.randn(2, 3, 4, 8)
    y = x + block.mu1(x)
    mu2 = block.mu2
    n = spatial_shift(mu2.norm(y))  # norm first, then the shift, then the projections
    a = mu2.A(n)
    torch.testing.assert_close(block(x), y + mu2.C(a * mu2.B(mu2.D(n)) + a))


def test_monet_has_no_activation_functions_and_is_not_linear():
    torch.manual_seed(0)
    model = registry.create("vision", "monet", in_chans=1, img_size=16, depth=2, embed_dim=16)
    activations = (nn.ReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.LeakyReLU, nn.Softplus,
                   nn.Mish, nn.Hardswish, nn.Hardtanh, nn.PReLU, nn.SELU, nn.CELU, nn.GLU, nn.Softmax)
    found = [name for name, m in model.named_modules()
             if isinstance(m, activations) or "act" in type(m).__name__.lower()]
    assert not found, found
    x = torch.randn(2, 1, 16, 16)
    assert not torch.allclose(model(2 * x), 2 * model(x), atol=1e-3)
    # Not linear even without the norms: the Hadamard product makes a layer quadratic.
    layer = MuLayer(4, 6, 2)
    layer.norm = nn.Identity()
    v = torch.randn(1, 2, 2, 4)
    assert not torch.allclose(layer(2 * v), 2 * layer(v), atol=1e-3)


@pytest.mark.parametrize("fill", ["replicate", "zero"])
def test_spatial_shift_moves_each_channel_group_one_token(fill):
    b, h, w, g = 2, 3, 4, 2
    grid = torch.randn(b, h, w, 4 * g)
    out = spatial_shift(grid, fill)
    edge = (lambda i, j, k: grid[:, i, j, k * g:(k + 1) * g]) if fill == "replicate" \
        else (lambda i, j, k: torch.zeros(b, g))
    # group k of token (i, j) comes from (i + di, j + dj): down, up, right, left.
    for k, (di, dj) in enumerate(((-1, 0), (1, 0), (0, -1), (0, 1))):
        for i in range(h):
            for j in range(w):
                si, sj = i + di, j + dj
                src = grid[:, si, sj, k * g:(k + 1) * g] if 0 <= si < h and 0 <= sj < w else edge(i, j, k)
                torch.testing.assert_close(out[:, i, j, k * g:(k + 1) * g], src)


def test_monet_rejects_bad_settings():
    with pytest.raises(UserError, match="embed_dim"):
        MONet(embed_dim=30)
    with pytest.raises(UserError, match="rank_ratio"):
        MONet(rank_ratio=1.0)
    with pytest.raises(UserError, match="shift_fill"):
        MONet(shift_fill="wrap")


@pytest.mark.parametrize("name, dim", [("crate", 192), ("monet", 128)])
def test_defaults_are_small(name, dim):
    model = registry.create("vision", name, in_chans=3, img_size=32)
    assert model.num_features == dim
    assert sum(p.numel() for p in model.parameters()) < 3e6
