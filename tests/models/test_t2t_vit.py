"""T2T-ViT against the paper's equations on small cases (Yuan et al. 2021)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from labformer import registry
from labformer.errors import UserError
from labformer.models.vision import t2t_vit as t2t
from labformer.models.vision.t2t_vit import SoftSplit, T2TViT, TokenTransformer, restructurize

SIZES = ("t2t_vit_7", "t2t_vit_12", "t2t_vit_14")
PAPER_SPLITS = dict(split_kernels=t2t.PAPER_KERNELS, split_strides=t2t.PAPER_STRIDES,
                    split_paddings=t2t.PAPER_PADDINGS)


def tiny(**kw) -> T2TViT:
    """A small, deterministic model (no stochastic depth) for the training tests."""
    return T2TViT(**{"embed_dim": 32, "depth": 2, "num_heads": 2, "token_dim": 16, "drop_path_rate": 0.0, **kw})


@pytest.mark.parametrize("size,k,s,p", [(5, 3, 2, 1), (6, 3, 1, 1), (7, 2, 2, 0), (9, 7, 4, 2)])
def test_soft_split_is_hand_computed_unfold(size, k, s, p):
    torch.manual_seed(0)
    image = torch.randn(2, 3, size, size)
    tokens = SoftSplit(k, s, p)(image)
    side = math.floor((size + 2 * p - k) / s + 1)
    assert tokens.shape == (2, side * side, 3 * k * k)
    padded = F.pad(image, (p, p, p, p))
    for i in range(side):
        for j in range(side):
            patch = padded[:, :, i * s:i * s + k, j * s:j * s + k]  # [B, C, k, k]
            # Row-major token index; the token is the channel-major flattening of its patch.
            torch.testing.assert_close(tokens[:, i * side + j], patch.reshape(2, -1))


def test_restructurize_puts_token_ij_at_pixel_ij():
    h, w, c = 3, 4, 5
    index = torch.arange(h * w, dtype=torch.float32)
    tokens = (index[:, None] + 100 * torch.arange(c)[None]).expand(2, -1, -1)  # token n, channel c -> n + 100c
    image = restructurize(tokens, h, w)
    assert image.shape == (2, c, h, w)
    for i in range(h):
        for j in range(w):
            assert torch.equal(image[:, :, i, j], tokens[:, i * w + j])
    # A 1x1 soft split is the inverse of the reshape.
    torch.testing.assert_close(SoftSplit(1, 1, 0)(image), tokens)
    with pytest.raises(ValueError):
        restructurize(tokens, 4, 4)


def test_token_transformer_is_mlp_of_msa_with_value_skip():
    torch.manual_seed(0)
    layer = TokenTransformer(in_dim=27, dim=8).eval()
    tokens = torch.randn(2, 10, 27)
    q, k, v = layer.qkv(layer.norm1(tokens)).chunk(3, dim=-1)
    attention = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), dim=-1)
    a = v + layer.proj(attention @ v)
    expected = a + layer.mlp(layer.norm2(a))
    torch.testing.assert_close(layer(tokens), expected)


@pytest.mark.parametrize("img_size,kw,grids", [
    (32, {}, [16, 8, 8]),
    (28, {}, [14, 7, 7]),
    (224, PAPER_SPLITS, [56, 28, 14]),
])
def test_token_counts_per_stage(img_size, kw, grids):
    model = tiny(in_chans=3, img_size=img_size, **kw)
    assert model.grid_sizes(img_size) == grids
    assert model.num_tokens == grids[-1] ** 2
    assert len(model.t2t_layers) == len(grids) - 1  # one T2T layer between consecutive splits
    if img_size <= 32:  # the full T2T module really produces that many tokens
        assert model.tokens_to_token(torch.randn(1, 3, img_size, img_size)).shape == (1, grids[-1] ** 2, 32)


@pytest.mark.parametrize("name,in_chans,img_size", [
    ("t2t_vit_7", 1, 28), ("t2t_vit_7", 3, 32), ("t2t_vit_12", 1, 28), ("t2t_vit_14", 3, 32)])
def test_forward_shape(name, in_chans, img_size):
    model = registry.create("vision", name, in_chans=in_chans, img_size=img_size).eval()
    with torch.no_grad():
        features = model(torch.randn(2, in_chans, img_size, img_size))
    assert features.shape == (2, model.num_features)
    assert model.num_features == {"t2t_vit_14": 384}.get(name, 256)
    assert torch.isfinite(features).all()


def test_sinusoid_position_table_and_other_image_sizes():
    table = t2t.sinusoid_table(10, 8)[0]
    pos, i = 7, 2  # E[pos, 2i] = sin(pos / 10000^(2i/d)), E[pos, 2i+1] = cos(...)
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 8)), abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 8)), abs=1e-6)
    model = tiny(img_size=32).eval()
    assert "pos_embed" not in dict(model.named_parameters())  # fixed, as in the paper
    assert model(torch.randn(1, 3, 28, 28)).shape == (1, 32)  # sinusoids exist for any length
    with pytest.raises(UserError, match="img_size"):
        tiny(img_size=32, pos_embed="learned")(torch.randn(1, 3, 28, 28))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = tiny(in_chans=1, img_size=28, pos_embed="learned")
    model(torch.randn(3, 1, 28, 28)).pow(2).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_one_optimiser_step_reduces_loss_of_linear_head():
    torch.manual_seed(0)
    model, head = tiny(in_chans=3, img_size=32), torch.nn.Linear(32, 4)
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
    params = [*model.parameters(), *head.parameters()]
    optimiser = torch.optim.Adam(params, lr=1e-3)

    def loss() -> torch.Tensor:
        return F.cross_entropy(head(model(images)), labels)

    before = loss()
    optimiser.zero_grad()
    before.backward()
    optimiser.step()
    with torch.no_grad():
        after = loss()
    assert after < before - 1e-3


@pytest.mark.parametrize("name,paper_millions", [("t2t_vit_7", 4.3), ("t2t_vit_12", 6.9), ("t2t_vit_14", 21.5)])
def test_parameter_count_matches_paper_at_224(name, paper_millions):
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = registry.create("vision", name, in_chans=3, img_size=224, **PAPER_SPLITS)
    assert model.num_tokens == 14 * 14
    # The paper counts a 1000-class ImageNet head; the backbone has none.
    head = model.num_features * 1000 + 1000
    total = sum(p.numel() for p in model.parameters()) + head
    assert total / 1e6 == pytest.approx(paper_millions, rel=0.03)


def test_bad_splits_fail_with_a_fix():
    with pytest.raises(UserError, match="equal length"):
        tiny(split_kernels=[3, 3], split_strides=[2, 2, 1])
    with pytest.raises(UserError, match="too small"):
        tiny(img_size=4, split_kernels=[7], split_strides=[4], split_paddings=[0])


@pytest.mark.parametrize("name", SIZES)
def test_sizes_are_variants_of_one_class_whose_settings_are_checked(name):
    entry = registry.get(name, task="vision")
    assert entry.builder is T2TViT and set(entry.args) == {"embed_dim", "depth", "num_heads", "mlp_ratio"}
    model = entry.build(in_chans=1, img_size=28, depth=1)  # a config value wins over the size's own
    assert len(model.blocks) == 1 and model.embed_dim == entry.args["embed_dim"]
    with pytest.raises(UserError, match="model.depth must be an integer"):
        entry.build(depth="7")
