"""Triplet network (Hoffer & Ailon 2015) with in-batch mining.

Embedding e = normalise(W f(x)); for a triplet (anchor a, positive p of a's class,
negative n of another class) the margin loss is

    l(a, p, n) = max(0, d(a, p) - d(a, n) + margin),   d = Euclidean distance

Triplets are mined inside each P-classes x K-samples batch (both augmented views of an
item count as samples of its class):
- batch_all: every valid triplet; the mean over those with a non-zero loss (Hermans et al. 2017)
- batch_hard: per anchor the farthest positive and the closest negative (Hermans et al. 2017)
- semi_hard: per (a, p) the closest negative farther than p (FaceNet, Schroff et al. 2015);
  when none is farther, the farthest negative (the least violating one)
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.objectives.base import Objective
from labformer.registry import register

MINING = ("batch_all", "batch_hard", "semi_hard")


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same  # positives (not itself), negatives


def mine(dist: torch.Tensor, labels: torch.Tensor, strategy: str) -> tuple[torch.Tensor, ...]:
    """(anchor, positive, negative) index tensors of the triplets `strategy` selects."""
    pos, neg = _masks(labels)
    if strategy == "batch_hard":
        ok = pos.any(1) & neg.any(1)
        hardest_pos = dist.masked_fill(~pos, float("-inf")).argmax(1)
        hardest_neg = dist.masked_fill(~neg, float("inf")).argmin(1)
        anchors = ok.nonzero().squeeze(1)
        return anchors, hardest_pos[anchors], hardest_neg[anchors]
    a, p = pos.nonzero(as_tuple=True)
    if strategy == "batch_all":
        valid = neg[a]  # [num_pairs, B]
        pair, n = valid.nonzero(as_tuple=True)
        return a[pair], p[pair], n
    if strategy == "semi_hard":
        d_ap = dist[a, p][:, None]
        d_an = dist[a]  # [num_pairs, B]
        farther = neg[a] & (d_an > d_ap)
        closest_farther = d_an.masked_fill(~farther, float("inf")).argmin(1)
        farthest = d_an.masked_fill(~neg[a], float("-inf")).argmax(1)
        n = torch.where(farther.any(1), closest_farther, farthest)
        keep = neg[a].any(1)
        return a[keep], p[keep], n[keep]
    raise UserError(f"objective.mining={strategy} is unknown; use one of {', '.join(MINING)}")


def triplet_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float, strategy: str) -> tuple[torch.Tensor, dict]:
    dist = torch.cdist(emb, emb)
    a, p, n = mine(dist.detach(), labels, strategy)
    if len(a) == 0:
        raise UserError("the batch holds no (anchor, positive, negative) triplet: the triplet objective needs "
                        "at least 2 classes per batch (task.pk_sampler.classes >= 2)")
    losses = F.relu(dist[a, p] - dist[a, n] + margin)
    active = (losses > 0).float()
    if strategy == "batch_all":
        loss = losses.sum() / active.sum().clamp(min=1)
    else:
        loss = losses.mean()
    return loss, {"active_triplets": active.mean()}


@register("triplet", task="contrastive", kind="objective", needs_labels=True,
          paper="Hoffer & Ailon 2015, Deep metric learning using Triplet network")
class Triplet(Objective):
    needs_labels = True

    def __init__(self, feature_dim: int, embed_dim: int = 64, margin: float = 0.2,
                 mining: str = "batch_all", normalize: bool = True) -> None:
        """mining: batch_all | batch_hard | semi_hard (module docstring); normalize: l2-normalise the
        embeddings (distances then lie in [0, 2]). batch_all by default: on Omniglot (vit_nano, 10
        epochs) batch_hard collapsed to one point within 2 epochs on one of three character splits,
        while batch_all learnt on all three (20-way one-shot 0.23-0.28; benchmarks/contrastive)."""
        super().__init__(feature_dim)
        if mining not in MINING:
            raise UserError(f"objective.mining={mining} is unknown; use one of {', '.join(MINING)}")
        self.embed = nn.Linear(feature_dim, embed_dim)
        self.margin, self.mining, self.normalize = margin, mining, normalize

    def embedding(self, features: torch.Tensor) -> torch.Tensor:
        e = self.embed(features)
        return F.normalize(e, dim=-1) if self.normalize else e

    def loss(self, encoder, batch):
        v1, v2 = batch["views"]
        emb = self.embedding(torch.cat([encoder(v1), encoder(v2)]))
        labels = batch["y"].repeat(2)
        return triplet_loss(emb, labels, self.margin, self.mining)

    def score(self, query, support):
        return -torch.cdist(self.embedding(query), self.embedding(support))
