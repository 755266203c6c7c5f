"""`python -m labformer analyse <ckpt> --atman | --pairs | --project`: each method against a hand computation on
a tiny model, and each tool's picture and numbers on a checkpoint of its family's default run."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from labformer import pipeline
from labformer.analysis.atman import atman, factor_rows, suppressing
from labformer.analysis.attention import Found, find_attention
from labformer.analysis.pairs import embedding_encode, pair_attribution
from labformer.analysis.project import neuron_projections
from labformer.analysis.rebuild import first_items, rebuild
from labformer.layers.attention import build_attention
from labformer.models.contrastive.encoder import Encoder
from labformer.models.lm.gpt import GPT

from conftest import compose_config
from test_analyse import N, QUICK, cli, lm_run  # noqa: F401  (lm_run: the tiny LM run, a fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    """The vision family's default run (vit_nano on digits), two training steps."""
    return pipeline.train(compose_config(*QUICK, "run_id=vit", log_dir=tmp_path_factory.mktemp("vit") / "logs"))


@pytest.fixture(scope="module")
def contrastive_run(tmp_path_factory):
    """The contrastive family's default run (simsiam, vit_nano encoder on digits), two training steps."""
    log_dir = tmp_path_factory.mktemp("contrastive") / "logs"
    return pipeline.train(compose_config("task=contrastive", *QUICK, "run_id=siamese", log_dir=log_dir))


def arrays(path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def assert_picture(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


# -- AtMan ---------------------------------------------------------------------------------------------------
def hand_attention(q, k, v, factors, causal):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) * factors[:, None, None, :]
    if causal:
        scores = scores.masked_fill(torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("kind", ["softmax", "softmax_causal", "timm"])
def test_suppression_multiplies_the_pre_softmax_scores_as_the_paper_says(kind):
    torch.manual_seed(0)
    b, t, d, h = 2, 7, 16, 2
    if kind == "timm":
        from timm.layers import Attention

        attn = Attention(d, num_heads=h, qkv_bias=True, qk_norm=True, norm_layer=nn.LayerNorm).eval()
    else:
        attn = build_attention("softmax", dim=d, num_heads=h, causal=kind.endswith("causal"), max_len=t).eval()
    x, factors = torch.randn(b, t, d), torch.rand(b, t) * 0.9 + 0.1
    found = Found([("attn", attn)])
    with torch.no_grad():
        before = attn(x)
        with suppressing(found, factors):
            got = attn(x)
        q, k, v = attn.qkv(x).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        if kind == "timm":
            q, k = attn.q_norm(q), attn.k_norm(k)
            want = attn.proj(hand_attention(q, k, v, factors, False).transpose(1, 2).reshape(b, t, d))
        else:
            want = attn.out_proj(hand_attention(q, k, v, factors, attn.causal).transpose(1, 2).reshape(b, t, d))
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
        assert not torch.allclose(got, before, atol=1e-3)  # the factors did change something
        assert torch.equal(attn(x), before)  # and on exit the module is as it was
    assert getattr(attn, "suppress", None) is None and "probs" not in attn.__dict__


class OneTokenModel(nn.Module):
    """logits = head(attention output at position 0), every value vector zero but token `j`'s: the output
    depends on token j alone (all scores a positive constant, so suppressing a key lowers its weight)."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        self.attn = build_attention("softmax", dim=dim, num_heads=1, causal=False, max_len=16)
        self.head = nn.Linear(dim, 3)
        with torch.no_grad():
            self.attn.qkv.weight.zero_()
            self.attn.qkv.weight[2 * dim:] = torch.eye(dim)  # v = x
            self.attn.qkv.bias.zero_()
            self.attn.qkv.bias[:2 * dim] = 1.0  # q = k = 1: scores sqrt(dim) for every key
            self.attn.out_proj.weight.copy_(torch.eye(dim))
            self.attn.out_proj.bias.zero_()

    def forward(self, x):
        return self.head(self.attn(x)[:, 0])


def test_atman_gives_the_only_token_the_output_reads_the_largest_relevance():
    torch.manual_seed(0)
    model = OneTokenModel().eval()
    x = torch.zeros(3, 6, 4)
    for item, j in enumerate([0, 2, 5]):
        x[item, j] = torch.randn(4) * 3
    result = atman(model, x, find_attention(model))
    assert result.relevance.argmax(1).tolist() == [0, 2, 5]
    assert (result.relevance.max(1).values > 0).all()
    assert torch.equal(atman(model, x, find_attention(model), p=0.0).relevance, torch.zeros(3, 6))


def test_atman_spreads_the_suppression_to_similar_tokens_by_their_cosine():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.2], [0.0, 1.0]])
    rows = factor_rows(x, [0, 1, 2], p=0.9, kappa=0.9)
    cos = 1 / math.hypot(1.0, 0.2)
    assert torch.allclose(rows, torch.tensor([[0.1, 1 - 0.9 * cos, 1], [1 - 0.9 * cos, 0.1, 1], [1, 1, 0.1]]))
    assert torch.allclose(factor_rows(x, [0, 1, 2], p=0.9, kappa=None), 1 - 0.9 * torch.eye(3))


@pytest.mark.parametrize("which", ["lm", "vit"])
def test_atman_with_p0_is_exactly_zero_on_a_trained_run(which, lm_run, vit_run):  # noqa: F811
    run = rebuild((lm_run if which == "lm" else vit_run).best_ckpt)
    _, inputs = first_items(run.datamodule, 2)
    result = atman(run.module, inputs, find_attention(run.module), p=0.0)
    assert torch.equal(result.relevance, torch.zeros_like(result.relevance))
    if which == "lm":
        assert torch.equal(result.positions, torch.zeros_like(result.positions))


def test_atman_and_projection_on_the_lm_run(lm_run, tmp_path, capsys):  # noqa: F811
    code, out, _ = cli(capsys, "analyse", lm_run.best_ckpt, "--atman", "--project", "--batch", str(N),
                       "--out", str(tmp_path))
    assert code == 0, out
    for stem in ("atman_relevance", "logit_lens"):
        assert_picture(tmp_path / f"{stem}.png")
        assert f"wrote {tmp_path / stem}.npz" in out and (tmp_path / f"{stem}.json").is_file()
    run = rebuild(lm_run.best_ckpt)
    _, tokens = first_items(run.datamodule, N)
    with torch.no_grad():
        logits = run.module(tokens)

    rel = arrays(tmp_path / "atman_relevance.npz")
    assert rel["relevance"].shape == (N, 32) and rel["relevance_positions"].shape == (N, 31, 32)
    np.testing.assert_array_equal(rel["target"], logits[:, -1].argmax(-1).numpy())  # the model's prediction
    np.testing.assert_array_equal(rel["tokens"], tokens.numpy())
    assert np.abs(rel["relevance"]).max() > 0
    # causal: position t never sees a later token, so suppressing one changes nothing there - exactly
    assert not np.triu(rel["relevance_positions"], k=1).any()
    assert json.loads((tmp_path / "atman_relevance.json").read_text())["p"] == 0.9

    lens = arrays(tmp_path / "logit_lens.npz")
    assert lens["logits"].shape == (3, 32, run.module.vocab_size)  # embedding + 2 blocks, item 0
    np.testing.assert_allclose(lens["model_logits"], logits[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(lens["logits"][-1], lens["model_logits"], atol=1e-5)  # the last layer: the logits
    assert lens["top_ids"].shape == (3, N, 32, 5)
    summary = json.loads((tmp_path / "logit_lens.json").read_text())
    assert summary["layers"] == ["embedding", "block 0", "block 1"]
    assert len(summary["neurons"]) == 8 and all(len(n["top_tokens"]) == 5 for n in summary["neurons"])


def test_a_neurons_projection_is_its_ffn_output_column_times_the_unembedding(lm_run):  # noqa: F811
    module = rebuild(lm_run.best_ckpt).module
    unembed = module.backbone.token_embedding.weight  # tied: the head is the token embedding
    for block, idx, proj in neuron_projections(module):
        w_out = module.backbone.blocks[block].ffn.out_proj.weight  # [dim, hidden]
        for j, row in zip(idx.tolist(), proj):
            by_hand = torch.stack([sum(w_out[d, j] * unembed[v, d] for d in range(w_out.shape[0]))
                                   for v in range(0, unembed.shape[0], 7)])
            assert torch.allclose(row[::7], by_hand.detach(), atol=1e-6)


def test_atman_and_projection_on_the_vision_run(vit_run, tmp_path):
    from labformer.analysis.command import analyse

    out = analyse(vit_run.best_ckpt, batch=N, out=tmp_path, atman=True, project=True)
    assert "AtMan relevance (p=0.9) of 16 tokens" in out  # the 4x4 patches; the class token stays
    run = rebuild(vit_run.best_ckpt)
    _, images = first_items(run.datamodule, N)
    with torch.no_grad():
        logits = run.module(images)
    assert_picture(tmp_path / "atman_relevance.png")
    rel = arrays(tmp_path / "atman_relevance.npz")
    assert rel["relevance_map"].shape == (N, 4, 4) and np.abs(rel["relevance"]).max() > 0
    np.testing.assert_array_equal(rel["keys"], np.arange(1, 17))
    np.testing.assert_array_equal(rel["target"], logits.argmax(-1).numpy())

    assert_picture(tmp_path / "logit_lens.png")
    lens = arrays(tmp_path / "logit_lens.npz")
    assert lens["logits"].shape == (5, N, 10)  # embedding + vit_nano's 4 blocks, 10 digit classes
    np.testing.assert_allclose(lens["model_logits"], logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(lens["logits"][-1], lens["model_logits"], atol=1e-5)
    np.testing.assert_allclose(lens["probs"].sum(-1), 1.0, atol=1e-5)


# -- pair attribution ---------------------------------------------------------------------------------------
def test_pair_attribution_of_a_linear_encoder_is_the_closed_form():
    torch.manual_seed(0)
    f = nn.Linear(6, 3).double()
    a, b, a0, b0 = torch.randn(4, 6, dtype=torch.float64)
    got = pair_attribution(f, a, a0, f, b, b0, steps=1)
    w = f.weight.detach()
    np.testing.assert_allclose(got.matrix, (a - a0)[:, None] * (w.T @ w) * (b - b0)[None, :], atol=1e-10)
    assert abs(got.gap) < 1e-10


def test_pair_attribution_is_complete_with_enough_steps_and_not_with_one():
    torch.manual_seed(0)
    f = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 4)).double()
    g = nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.Linear(8, 4)).double()
    for net in (f, g):
        nn.init.normal_(net[0].weight, std=1.5)
    a, b = torch.randn(2, 5, dtype=torch.float64) * 2
    a0, b0 = torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    fine, coarse = (pair_attribution(f, a, a0, g, b, b0, steps=s) for s in (256, 1))
    scale = abs(fine.expected)
    assert scale > 0.1
    assert abs(fine.gap) < 1e-4 * scale
    assert abs(coarse.gap) > 1e-2 * scale  # one midpoint is not the path's average: the check can fail


def test_token_pair_attribution_sums_to_the_similarity_difference():
    torch.manual_seed(0)
    encoder = Encoder(GPT(vocab_size=11, max_len=6, causal=False, depth=1, dim=8, num_heads=2), "lm").eval()
    emb = encoder.backbone.token_embedding
    a, b = torch.randint(0, 11, (2, 6))
    with torch.no_grad():
        ea, eb = emb(a), emb(b)
    tokens = torch.arange(6).repeat_interleave(8)
    got = pair_attribution(embedding_encode(encoder, emb, a), ea, torch.zeros_like(ea),
                           embedding_encode(encoder, emb, b), eb, torch.zeros_like(eb), 64, tokens, tokens)
    assert got.matrix.shape == (6, 6)
    assert abs(got.gap) < 1e-3 * abs(got.expected)
    with torch.no_grad():
        assert got.similarities["s_ab"] == pytest.approx(float(encoder(a[None]) @ encoder(b[None]).T), rel=1e-5)


def test_pairs_on_the_contrastive_run(contrastive_run, tmp_path, capsys):
    code, out, _ = cli(capsys, "analyse", contrastive_run.best_ckpt, "--pairs", "--steps", "32", "--out", str(tmp_path))
    assert code == 0 and "completeness says" in out
    assert_picture(tmp_path / "pair_attribution.png")
    got = arrays(tmp_path / "pair_attribution.npz")
    assert got["attribution"].shape == (16, 16)  # 4x4 patches of each 16 px digit
    expected = got["s_ab"] - got["s_a0b"] - got["s_ab0"] + got["s_a0b0"]
    assert got["attribution"].sum() == pytest.approx(float(expected), rel=1e-2)  # completeness
    summary = json.loads((tmp_path / "pair_attribution.json").read_text())
    assert summary["completeness_gap"] == pytest.approx(float(got["attribution"].sum() - expected), abs=1e-3)
    run = rebuild(contrastive_run.best_ckpt)
    _, images = first_items(run.datamodule, 2)
    np.testing.assert_array_equal(got["a"], images[0].numpy())
    with torch.no_grad():
        feats = run.module.encoder(images)
    assert float(got["s_ab"]) == pytest.approx(float(feats[0] @ feats[1]), rel=1e-4)


# -- what does not apply -----------------------------------------------------------------------------------
def test_a_tool_that_does_not_fit_the_checkpoint_is_a_clear_error(lm_run, contrastive_run, tmp_path, capsys):  # noqa: F811
    code, _, err = cli(capsys, "analyse", lm_run.best_ckpt, "--pairs", "--out", str(tmp_path))
    assert code == 2 and "--pairs does not apply" in err and "task=lm" in err and "task=contrastive" in err
    code, _, err = cli(capsys, "analyse", contrastive_run.best_ckpt, "--atman", "--out", str(tmp_path))
    assert code == 2 and "task=vision or task=lm" in err and "--pairs" in err
    code, _, err = cli(capsys, "analyse", contrastive_run.best_ckpt, "--project", "--out", str(tmp_path))
    assert code == 2 and "--project does not apply" in err and "task=lm or task=vision" in err
    code, _, err = cli(capsys, "analyse", contrastive_run.best_ckpt, "--pairs", "--steps", "0")
    assert code == 2 and "--steps 0" in err
    assert not list(tmp_path.iterdir())  # nothing half-written
