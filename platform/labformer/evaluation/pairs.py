"""Pair matching of frozen embeddings: AUROC and accuracy of a score on fixed labelled pairs.

A pair (i, j) gets the logit s_ij = score(f_i, f_j) (an objective's learned or scaled scorer, e.g.
SMITH's a * cos) or, without one, the cosine similarity; p = sigmoid(s) is thresholded at 1/2
(s > 0: SMITH's decision rule, and cosine > 0 without a scorer). AUROC needs no threshold.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import binary_accuracy, binary_auroc

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def pair_logits(feats: torch.Tensor, left, right, score: Score | None = None, chunk: int = 256) -> torch.Tensor:
    """s(f_left[k], f_right[k]) for every pair k ([P]); `score` maps (query [Q,D], support [S,D]) -> [Q,S]."""
    a, b = feats[torch.as_tensor(left, dtype=torch.long)], feats[torch.as_tensor(right, dtype=torch.long)]
    if score is None:
        return F.cosine_similarity(a.float(), b.float(), dim=-1)
    return torch.cat([score(a[k:k + chunk], b[k:k + chunk]).diagonal() for k in range(0, len(a), chunk)]).float()


def pair_metrics(feats: torch.Tensor, left, right, target, score: Score | None = None) -> dict[str, float]:
    """{"match_auroc", "match_acc"} over the pairs whose two items are among `feats` (an evaluation loader
    stopped early leaves the later ones out); {} when none is left or only one kind is."""
    left, right, target = np.asarray(left), np.asarray(right), np.asarray(target)
    keep = (left < len(feats)) & (right < len(feats))
    target = torch.as_tensor(target[keep], dtype=torch.long)
    if len(target.unique()) < 2:
        return {}
    probs = torch.sigmoid(pair_logits(feats.cpu(), left[keep], right[keep], score).cpu())
    return {"match_auroc": float(binary_auroc(probs, target)), "match_acc": float(binary_accuracy(probs, target))}
