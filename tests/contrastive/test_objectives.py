"""The objectives against their papers' equations on small hand-made cases."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer import registry
from labformer.models.contrastive.encoder import Encoder
from labformer.objectives.heads import ema_update
from labformer.objectives.infonce import nt_xent
from labformer.models.contrastive.masking import drop_vit_tokens, kept_count, mask_pixel_patches
from labformer.objectives.msn import MSN, sharpen
from labformer.objectives.pair import balanced_pairs
from labformer.objectives.simsiam import SimSiam, negative_cosine
from labformer.objectives.triplet import mine, triplet_loss


class Linear(nn.Module):
    """A tiny vision-style encoder: images [B,1,4,4] -> [B,8]."""

    def __init__(self):
        super().__init__()
        self.net, self.num_features = nn.Linear(16, 8), 8

    def forward(self, x):
        return self.net(x.flatten(1))


def views(b=6):
    torch.manual_seed(0)
    return {"views": (torch.randn(b, 1, 4, 4), torch.randn(b, 1, 4, 4)), "y": torch.arange(b) % 3}


def test_registry_lists_every_objective():
    assert set(registry.list_models(kind="objective")) == {"simsiam", "msn", "infonce", "triplet", "pair", "cropmae",
                                                             "smith", "smith_pretrain"}
    assert registry.get("triplet", kind="objective").meta["needs_labels"]


# -- SimSiam ----------------------------------------------------------------------------------
def test_simsiam_stop_gradient_blocks_the_target_branch():
    p = torch.randn(4, 5, requires_grad=True)
    z = torch.randn(4, 5, requires_grad=True)
    negative_cosine(p, z).backward()
    assert z.grad is None and p.grad is not None and p.grad.abs().sum() > 0


def test_simsiam_loss_is_the_symmetric_negative_cosine():
    torch.manual_seed(3)
    enc = Encoder(Linear(), "vision")
    obj = SimSiam(8, proj_dim=16, pred_hidden=4).eval()
    batch = views()
    loss, _ = obj.loss(enc, batch)
    v1, v2 = batch["views"]
    z1, z2 = obj.projector(enc(v1)), obj.projector(enc(v2))
    p1, p2 = obj.predictor(z1), obj.predictor(z2)
    assert (z1.norm(dim=1) > 0).all() and (z2.norm(dim=1) > 0).all()
    d = lambda p, z: -(p / p.norm(dim=1, keepdim=True) * (z / z.norm(dim=1, keepdim=True))).sum(1).mean()
    assert loss.item() == pytest.approx((d(p1, z2) / 2 + d(p2, z1) / 2).item(), abs=1e-6)


# -- InfoNCE ---------------------------------------------------------------------------------
def test_nt_xent_matches_its_definition():
    torch.manual_seed(1)
    z1, z2, tau = torch.randn(3, 4), torch.randn(3, 4), 0.5
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    total = 0.0
    for i in range(6):
        j = (i + 3) % 6
        others = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(6) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / tau) / others)
    assert nt_xent(z1, z2, tau).item() == pytest.approx(total / 6, rel=1e-5)


# -- EMA and MSN ------------------------------------------------------------------------------
def test_ema_update_matches_its_formula():
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = target.weight.detach().clone()
    ema_update(target, online, 0.9)
    assert torch.allclose(target.weight, 0.9 * before + 0.1 * online.weight.detach())


def test_msn_target_gets_no_gradient_and_follows_the_online_encoder_by_ema():
    enc = Encoder(Linear(), "vision")
    obj = MSN(8, proj_dim=6, proj_hidden=8, num_prototypes=5, patch_size=2)
    obj.attach(enc)
    loss, _ = obj.loss(enc, views())
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in obj.target_encoder.parameters())
    assert all(p.grad is None for p in obj.target_projector.parameters())
    assert enc.backbone.net.weight.grad.abs().sum() > 0 and obj.prototypes.grad.abs().sum() > 0
    with torch.no_grad():
        enc.backbone.net.weight.add_(1.0)  # as if an optimiser step moved the online weights
    target_before = obj.target_encoder.backbone.net.weight.clone()
    obj.after_step(enc)
    expected = 0.996 * target_before + 0.004 * enc.backbone.net.weight
    assert torch.allclose(obj.target_encoder.backbone.net.weight, expected)


def test_msn_target_temperature_is_sharpening():
    s = torch.randn(4, 7)
    assert torch.allclose(F.softmax(s / 0.025, -1), sharpen(F.softmax(s / 0.1, -1), 0.025 / 0.1), atol=1e-5)


def test_msn_loss_is_cross_entropy_minus_mean_entropy():
    torch.manual_seed(2)
    enc = Encoder(Linear(), "vision")
    obj = MSN(8, proj_dim=6, proj_hidden=8, num_prototypes=5, mask_ratio=0.0, patch_size=2, me_max_weight=0.7).eval()
    obj.attach(enc)
    batch = views()
    loss, _ = obj.loss(enc, batch)
    v1, v2 = batch["views"]
    anchor = obj.assign(obj.projector(torch.cat([enc(v1), enc(v2)])), 0.1)
    target = obj.assign(obj.target_projector(torch.cat([enc(v2), enc(v1)])), 0.025)
    mean = anchor.mean(0)
    expected = -(target * anchor.log()).sum(1).mean() + 0.7 * (mean * mean.log()).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_msn_drops_the_configured_share_of_vit_tokens(ratio):
    vit = registry.create("vision", "vit_nano", in_chans=1, img_size=16)  # 4 px patches: 16 tokens
    seen = []
    vit.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    out = drop_vit_tokens(vit, torch.randn(2, 1, 16, 16), ratio)
    assert out.shape == (2, vit.num_features)
    assert seen == [1 + kept_count(16, ratio)] and kept_count(16, ratio) == 16 - round(16 * ratio)


def test_pixel_masking_zeroes_the_configured_share_of_patches():
    x = torch.ones(3, 2, 8, 8)
    out = mask_pixel_patches(x, 0.75, 2)
    patches = out.unfold(2, 2, 2).unfold(3, 2, 2)  # [B, C, 4, 4, 2, 2]
    zeroed = (patches.abs().sum((1, 4, 5)) == 0).float().mean((1, 2))
    assert torch.equal(zeroed, torch.full((3,), 0.75))
    assert set(out.unique().tolist()) == {0.0, 1.0}


# -- triplet mining ----------------------------------------------------------------------------
def hand_made():
    # 1-d embeddings; classes: a={0,1,2}, b={3,4}
    emb = torch.tensor([[0.0], [1.0], [3.0], [2.5], [6.0]])
    return torch.cdist(emb, emb), torch.tensor([0, 0, 0, 1, 1])


def test_batch_hard_picks_the_farthest_positive_and_the_closest_negative():
    dist, labels = hand_made()
    a, p, n = mine(dist, labels, "batch_hard")
    assert a.tolist() == [0, 1, 2, 3, 4]
    assert p.tolist() == [2, 2, 0, 4, 3]  # anchor 0: positives at 1 and 3 -> 3.0 (index 2)
    assert n.tolist() == [3, 3, 3, 2, 2]  # anchor 0: negatives at 2.5 and 6 -> 2.5 (index 3)


def test_batch_all_lists_every_valid_triplet():
    dist, labels = hand_made()
    a, p, n = mine(dist, labels, "batch_all")
    assert len(a) == 3 * 2 * 2 + 2 * 1 * 3  # class a: 3 anchors x 2 positives x 2 negatives
    assert bool((labels[a] == labels[p]).all() and (labels[a] != labels[n]).all() and (a != p).all())


def test_semi_hard_takes_the_closest_negative_beyond_the_positive():
    dist, labels = hand_made()
    a, p, n = mine(dist, labels, "semi_hard")
    chosen = {(int(i), int(j)): int(k) for i, j, k in zip(a, p, n)}
    assert chosen[(0, 1)] == 3  # d(a,p)=1: negatives at 2.5 (farther) and 6 -> 2.5
    assert chosen[(0, 2)] == 4  # d(a,p)=3: only 6 is farther
    assert chosen[(2, 0)] == 4  # d(a,p)=3: negatives at 0.5 and 3; none farther than 3 -> the farthest (3)


def test_triplet_loss_is_the_margin_hinge():
    emb = torch.tensor([[0.0], [1.0], [3.0], [2.5], [6.0]])
    loss, _ = triplet_loss(emb, torch.tensor([0, 0, 0, 1, 1]), margin=0.2, strategy="batch_hard")
    d = lambda i, j: abs(float(emb[i] - emb[j]))
    terms = [max(0, d(0, 2) - d(0, 3) + 0.2), max(0, d(1, 2) - d(1, 3) + 0.2), max(0, d(2, 0) - d(2, 3) + 0.2),
             max(0, d(3, 4) - d(3, 2) + 0.2), max(0, d(4, 3) - d(4, 2) + 0.2)]
    assert loss.item() == pytest.approx(sum(terms) / 5, rel=1e-5)


def test_balanced_pairs_pair_each_item_with_a_positive_and_a_negative():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    left, right, target = balanced_pairs(labels, torch.Generator().manual_seed(0))
    same = labels[left] == labels[right]
    assert torch.equal(same.float(), target) and target.sum() == 6 and (left != right).all()
