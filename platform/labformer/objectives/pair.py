"""Siamese pair scoring for one-shot learning (Koch et al. 2015).

Twin embeddings h = W f(x) share one encoder; a pair's logit is a learned weighting of
their component-wise distance, s(x1, x2) = w . |h1 - h2| + b, trained with binary
cross-entropy on same-class (1) and different-class (0) pairs. From each P x K batch every
item is paired with one random same-class item and one random other-class item, so the
pairs are balanced. One-shot evaluation assigns a query to the support item of highest s.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.objectives.base import Objective
from labformer.registry import register


def balanced_pairs(labels: torch.Tensor, generator: torch.Generator | None = None):
    """(left, right, target): each item once with a random positive and once with a random negative."""
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    diff = labels[:, None] != labels[None, :]
    ok = same.any(1) & diff.any(1)
    if not ok.any():
        raise UserError("the batch holds no same-class and different-class pair: the pair objective needs "
                        "K >= 2 samples of P >= 2 classes per batch (task.pk_sampler)")
    noise = torch.rand(same.shape, generator=generator).to(labels.device)
    pos = noise.masked_fill(~same, -1).argmax(1)
    neg = noise.masked_fill(~diff, -1).argmax(1)
    items = ok.nonzero().squeeze(1)
    left = torch.cat([items, items])
    right = torch.cat([pos[items], neg[items]])
    target = torch.cat([torch.ones(len(items)), torch.zeros(len(items))]).to(labels.device)
    return left, right, target


@register("pair", task="contrastive", kind="objective", needs_labels=True,
          paper="Koch et al. 2015, Siamese Neural Networks for One-shot Image Recognition")
class Pair(Objective):
    needs_labels = True

    def __init__(self, feature_dim: int, embed_dim: int = 128) -> None:
        super().__init__(feature_dim)
        self.embed = nn.Sequential(nn.Linear(feature_dim, embed_dim), nn.Sigmoid())  # Koch: sigmoid features
        self.head = nn.Linear(embed_dim, 1)

    def logits(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        return self.head((h1 - h2).abs()).squeeze(-1)

    def loss(self, encoder, batch):
        v1, v2 = batch["views"]
        h = self.embed(torch.cat([encoder(v1), encoder(v2)]))
        labels = batch["y"].repeat(2)
        left, right, target = balanced_pairs(labels)
        logits = self.logits(h[left], h[right])
        loss = F.binary_cross_entropy_with_logits(logits, target)
        acc = ((logits > 0).float() == target).float().mean()
        return loss, {"pair_acc": acc}

    def score(self, query, support):
        hq, hs = self.embed(query), self.embed(support)
        return self.logits(hq[:, None, :], hs[None, :, :])
