"""Norms, FFNs, block layouts and nGPT: definitions, and that every registered part trains a step."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labformer import registry
from labformer.callbacks.text_samples import UnitNormWeights, renormalize
from labformer.errors import UserError
from labformer.layers.attention import causal_attention_names
from labformer.layers.block import TransformerBlock
from labformer.layers.ffn import PolyNorm, PolyReLU
from labformer.layers.moe import collect_aux_losses, moe_layers
from labformer.models.lm.gpt import GPT
from labformer.models.lm.ngpt import NGPT
from labformer.tasks.lm import LMTask

TINY = dict(vocab_size=11, max_len=16, depth=2, dim=16, num_heads=2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def trains_a_step(task: LMTask, causal: bool = True, steps: int = 1) -> None:
    """Every parameter gets a gradient (over `steps` steps: a mixture of experts routes each step's tokens
    to some experts only) and changes; the loss includes the MoE layers' auxiliary losses, as in training."""
    torch.manual_seed(0)
    before = {n: p.detach().clone() for n, p in task.named_parameters()}
    opt = torch.optim.AdamW(task.parameters(), lr=1e-2)
    reached: set[str] = set()
    for _ in range(steps):
        x = torch.randint(0, 11, (3, 16))
        target = x.roll(-1, 1) if causal else x
        loss = F.cross_entropy(task(x).flatten(0, 1), target.flatten())
        loss = loss + sum(collect_aux_losses(moe_layers(task)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
        reached |= {n for n, p in task.named_parameters() if p.grad is not None and p.grad.abs().sum()}
    changed = [n for n, p in task.named_parameters() if not torch.equal(before[n], p)]
    frozen = [n for n, _ in task.named_parameters() if n not in reached]
    assert not frozen, f"no gradient reaches {frozen}"
    assert len(changed) == len(before)


@pytest.mark.parametrize("attention", registry.list_models(kind="attention"))
def test_every_attention_trains_a_step_in_gpt(attention):
    causal = attention in causal_attention_names()
    backbone = GPT(**TINY, causal=causal, attention=attention)
    if causal:
        trains_a_step(LMTask(backbone, vocab_size=11))
    else:  # an encoder: predict each token from the whole sequence (a denoising-like probe)
        trains_a_step(LMTask(backbone, vocab_size=11), causal=False)


@pytest.mark.parametrize("norm", registry.list_models(kind="norm"))
@pytest.mark.parametrize("ffn", registry.list_models(kind="ffn") + ["none"])
@pytest.mark.parametrize("layout", ["sequential", "parallel"])
def test_every_norm_ffn_and_layout_trains_a_step(norm, ffn, layout):
    causal = registry.get(ffn, kind="ffn").meta.get("causal", True) if ffn != "none" else True
    steps = 8 if ffn in ("moe_topk", "soft_moe", "thor") else 1  # THOR: 2 of 4 experts per step
    backbone = GPT(**TINY, causal=causal, norm=norm, ffn=ffn, layout=layout)
    trains_a_step(LMTask(backbone, vocab_size=11), causal=causal, steps=steps)


def test_parallel_block_sums_attention_and_ffn_of_one_norm():
    block = TransformerBlock(16, 2, True, 16, layout="parallel").eval()
    x = torch.randn(2, 5, 16)
    h = block.norm1(x)
    torch.testing.assert_close(block(x), x + block.attn(h) + block.ffn(h))
    assert block.norm2 is None


def test_sequential_block_is_two_residual_sublayers():
    block = TransformerBlock(16, 2, True, 16, norm="rmsnorm", ffn="swiglu").eval()
    x = torch.randn(2, 5, 16)
    a = x + block.attn(block.norm1(x))
    torch.testing.assert_close(block(x), a + block.ffn(block.norm2(a)))


def test_polynomial_activations_match_their_formulas():
    x = torch.randn(4, 8)
    act = PolyNorm(order=3)
    with torch.no_grad():
        act.weight.copy_(torch.tensor([0.5, -1.0, 2.0]))
        act.bias.fill_(0.25)

    def n(u):
        return u / torch.sqrt(u.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(act(x), 0.5 * n(x) - 1.0 * n(x ** 2) + 2.0 * n(x ** 3) + 0.25)
    relu = PolyReLU(order=2)
    r = x.clamp_min(0)
    torch.testing.assert_close(relu(x), 0.5 * r + 0.5 * r ** 2)


def test_bad_layer_names_and_options_fail_with_the_fix():
    with pytest.raises(UserError, match="Did you mean: rmsnorm"):
        GPT(**TINY, norm="rmsnrom")
    with pytest.raises(UserError, match="model.ffn_kwargs.ordr"):
        GPT(**TINY, ffn="polynorm", ffn_kwargs={"ordr": 2})
    with pytest.raises(UserError, match="layout"):
        GPT(**TINY, layout="diagonal")


def _unit_norm_errors(task: LMTask) -> float:
    b = task.backbone
    tensors = [(b.token_embedding.weight, 1), (task.head.weight, 1)]
    for block in b.blocks:
        tensors += [(block.qkv.weight, 1), (block.up.weight, 1), (block.attn_out.weight, 0), (block.mlp_out.weight, 0)]
    return max((w.norm(dim=d) - 1).abs().max().item() for w, d in tensors)


def test_ngpt_weights_stay_on_the_unit_sphere_after_optimiser_steps():
    torch.manual_seed(0)
    task = LMTask(NGPT(**TINY), vocab_size=11)
    assert task.head.weight is not task.backbone.token_embedding.weight  # untied, as in the paper
    assert any(isinstance(c, UnitNormWeights) for c in task.configure_callbacks())
    assert _unit_norm_errors(task) < 1e-5
    opt = torch.optim.AdamW(task.parameters(), lr=0.05, weight_decay=0.0)
    x = torch.randint(0, 11, (4, 16))
    for _ in range(3):
        loss = F.cross_entropy(task(x).flatten(0, 1), x.roll(-1, 1).flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert _unit_norm_errors(task) > 1e-3  # the step leaves the sphere ...
        renormalize(task)
        assert _unit_norm_errors(task) < 1e-5  # ... and the callback's hook brings it back


def test_ngpt_hidden_states_are_unit_vectors():
    h = NGPT(**TINY)(torch.randint(0, 11, (2, 9)))
    torch.testing.assert_close(h.norm(dim=-1), torch.ones(2, 9))
