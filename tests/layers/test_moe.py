"""Mixture-of-experts layers against their definitions on hand-sized cases: capacity and dropped
tokens, Switch's balance loss, Soft MoE's convex weights, THOR's consistency term, causal refusal,
and the auxiliary losses reaching the task's loss."""
from __future__ import annotations

import pytest
import torch

from labformer.errors import UserError
from labformer.layers.block import TransformerBlock
from labformer.layers.moe import SharedMoE, active_parameters, moe_layers
from labformer.layers.moe.soft import SoftMoE
from labformer.layers.moe.thor import THOR
from labformer.layers.moe.topk import TopKMoE, assign_slots, balance_loss


def router_to(layer: TopKMoE, experts: list[int]) -> torch.Tensor:
    """Inputs whose router logits pick `experts[i]` for token i (a fixed router: one-hot on the first
    coordinates)."""
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[:, :layer.num_experts] = 10 * torch.eye(layer.num_experts)
    x = torch.zeros(len(experts), layer.router.in_features)
    x[torch.arange(len(experts)), torch.tensor(experts)] = 1.0
    return x


def test_capacity_is_respected_and_overflow_counted():
    torch.manual_seed(0)
    layer = TopKMoE(dim=8, hidden_ratio=1.0, num_experts=4, k=1, capacity_factor=1.0)  # C = ceil(6/4) = 2
    x = router_to(layer, [0, 0, 0, 1, 2, 0])
    y = layer(x)
    assert layer.capacity(6) == 2
    assert layer.dropped == pytest.approx(2 / 6)  # tokens 2 and 5 find expert 0 full
    assert (y[2] == 0).all() and (y[5] == 0).all() and y[0].abs().sum() > 0 and y[1].abs().sum() > 0
    assert layer.load.tolist() == pytest.approx([2 / 6, 1 / 6, 1 / 6, 0.0])
    position, keep = assign_slots(torch.tensor([[0], [0], [0], [1]]), 2, 2)
    assert position.view(-1).tolist() == [0, 1, 2, 0] and keep.view(-1).tolist() == [True, True, False, True]


def test_batch_prioritised_routing_keeps_the_most_confident_tokens():
    choices = torch.tensor([[0], [0], [0]])
    _, keep = assign_slots(choices, 1, 1, order=torch.tensor([2, 0, 1]))  # token 2 ranks first
    assert keep.view(-1).tolist() == [False, False, True]


def test_second_choices_fill_only_after_every_first_choice():
    # Expert 1 has one slot; token 0's second choice is 1, token 1's first choice is 1: token 1 wins it.
    _, keep = assign_slots(torch.tensor([[0, 1], [1, 0]]), 2, 1)
    assert keep.tolist() == [[True, False], [True, False]]


def test_token_combines_its_experts_weighted_by_router_probability():
    torch.manual_seed(0)
    layer = TopKMoE(dim=6, hidden_ratio=2.0, num_experts=3, k=2, capacity_factor=None)
    x = torch.randn(5, 6)
    y = layer(x)
    probs = layer.router(x).softmax(-1)
    gates, choice = probs.topk(2, -1)
    expected = torch.stack([sum(gates[n, j] * layer.experts.one(int(choice[n, j]), x[n]) for j in range(2))
                            for n in range(5)])
    assert torch.allclose(y, expected, atol=1e-5) and layer.dropped == 0.0


def test_balance_loss_equals_its_formula_on_a_hand_case():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    first = probs.argmax(1)  # experts 0, 0, 1, 2: f = (1/2, 1/4, 1/4)
    p_mean = [0.4, 0.375, 0.225]
    expected = 3 * (0.5 * p_mean[0] + 0.25 * p_mean[1] + 0.25 * p_mean[2])
    assert balance_loss(probs, first).item() == pytest.approx(expected)
    uniform = torch.full((4, 4), 0.25)  # perfectly balanced: the loss is exactly 1
    assert balance_loss(uniform, torch.arange(4)).item() == pytest.approx(1.0)


def test_router_z_loss_is_the_mean_squared_logsumexp():
    torch.manual_seed(1)
    layer = TopKMoE(dim=4, num_experts=3, z_weight=1.0, balance_weight=0.0)
    x = torch.randn(7, 4)
    layer(x)
    expected = torch.logsumexp(layer.router(x), -1).pow(2).mean()
    assert layer.aux_losses["moe_z"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_soft_moe_dispatch_and_combine_are_convex_and_nothing_is_dropped():
    torch.manual_seed(0)
    layer = SoftMoE(dim=8, hidden_ratio=1.0, num_experts=3, slots_per_expert=2)
    x = torch.randn(2, 5, 8)
    y = layer(x)
    dispatch, combine = layer.weights(x)
    assert torch.allclose(dispatch.sum(1), torch.ones(2, 6))  # each slot: a convex combination of tokens
    assert torch.allclose(combine.sum(2), torch.ones(2, 5))  # each token: a convex combination of slots
    slots = torch.einsum("btn,btd->bnd", dispatch, x)
    outs = torch.cat([layer.experts.one(e, slots[:, 2 * e:2 * e + 2]) for e in range(3)], dim=1)
    assert torch.allclose(y, torch.einsum("btn,bnd->btd", combine, outs), atol=1e-5)


def test_thor_consistency_is_zero_when_both_draws_pick_the_same_expert():
    torch.manual_seed(0)
    layer = THOR(dim=6, num_experts=3)
    x = torch.randn(4, 6)
    layer.draw = lambda: (1, 1)
    y = layer(x)
    assert layer.aux_losses["moe_consistency"].item() == 0.0
    assert torch.allclose(y, layer.experts.one(1, x))
    layer.draw = lambda: (1, 2)
    layer(x)
    expected = (layer.experts.one(1, x) - layer.experts.one(2, x)).pow(2).mean()
    assert expected > 0 and layer.aux_losses["moe_consistency"].item() == pytest.approx(expected.item(), rel=1e-5)
    layer.eval()
    mean = torch.stack([layer.experts.one(e, x) for e in range(3)]).mean(0)
    assert torch.allclose(layer(x), mean, atol=1e-6) and layer.aux_losses == {}


def test_token_mixing_experts_refuse_a_causal_block_and_the_causal_ones_stay_causal():
    with pytest.raises(UserError, match=r"model.ffn=soft_moe .*cannot be used in a causal.*moe_topk.*thor"):
        TransformerBlock(16, 2, causal=True, max_len=8, ffn="soft_moe")
    with pytest.raises(UserError, match="batch-prioritised routing .* cannot be causal"):
        TransformerBlock(16, 2, causal=True, max_len=8, ffn="moe_topk", ffn_kwargs={"priority": "batch"})
    for ffn in ("moe_topk", "thor"):
        torch.manual_seed(0)
        block = TransformerBlock(16, 2, causal=True, max_len=8, ffn=ffn, ffn_kwargs={"num_experts": 4}).eval()
        x = torch.randn(1, 8, 16)
        later = x.clone()
        later[:, 5:] = torch.randn(1, 3, 16)  # change only the future
        assert torch.allclose(block(x)[:, :5], block(later)[:, :5], atol=1e-6), ffn


def test_active_parameters_count_the_visited_experts_once_even_when_shared():
    layer = TopKMoE(dim=4, hidden_ratio=2.0, num_experts=4, k=2, bias=True)
    per_expert = 4 * 8 + 8 + 8 * 4 + 4
    total = sum(p.numel() for p in layer.parameters())
    assert active_parameters(layer) == total - 2 * per_expert
    model = torch.nn.Sequential(SharedMoE(layer), SharedMoE(layer))
    assert active_parameters(model) == total - 2 * per_expert
    assert len(moe_layers(model)) == 2  # each use counts its losses; the shared layer not again


def test_auxiliary_losses_reach_the_training_loss_and_are_logged():
    from labformer import registry
    from labformer.tasks.vision import VisionTask

    torch.manual_seed(0)
    backbone = registry.create("vision", "vit_moe", in_chans=1, img_size=16, depth=2, embed_dim=36)
    task = VisionTask(backbone, num_classes=3)
    logged = {}
    task.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    batch = (torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 0]))
    # the task's own loss fixed at 1 (but through the backbone): what is added is the MoE part
    task.step = lambda b, stage: task.backbone(b[0]).sum() * 0 + 1.0
    loss = task.training_step(batch, 0)
    assert set(logged) == {"train/moe_balance", "train/moe_z", "train/moe_dropped"}
    assert loss.item() == pytest.approx(1.0 + logged["train/moe_balance"] + logged["train/moe_z"], rel=1e-6)
    assert logged["train/moe_balance"] > 0 and 0.0 <= logged["train/moe_dropped"] < 1.0
    assert all(m.aux_losses == {} for m in moe_layers(backbone))  # taken once: never added twice
