"""THOR: stochastic experts without a router (Zuo et al., ICLR 2022, "Taming Sparsely Activated
Transformer with Stochastic Experts").

Training: each forward draws two experts at random, i and j, outputs Expert_i(x), and adds a
consistency term that pulls the two experts' outputs together:

    y = Expert_i(x)            consistency = weight * mean((Expert_i(x) - Expert_j(x))^2)

(zero when i == j). Difference, stated: the paper regularises the model's *predictions* of two
forward passes with a symmetric KL; this layer-level term needs one pass and no task change.
Evaluation: the mean of all experts' outputs (deterministic), or one random expert
(eval_mode=random, the paper's cheaper inference). A token sees only its own position, so
THOR is causal-safe.
"""
from __future__ import annotations

from typing import Literal

import torch

from labformer.errors import UserError
from labformer.layers.build import ANY_TASK
from labformer.layers.moe.base import Experts, MoELayer, hidden_width
from labformer.registry import register


@register("thor", task=ANY_TASK, kind="ffn", causal=True, paper="Zuo et al. 2022, THOR")
class THOR(MoELayer):
    def __init__(self, dim: int, hidden_ratio: float = 4.0, dropout: float = 0.0, bias: bool = True,
                 num_experts: int = 4, consistency_weight: float = 1.0,
                 eval_mode: Literal["mean", "random"] = "mean", causal: bool = False) -> None:
        """num_experts: E; consistency_weight: weight of the two draws' squared difference; eval_mode: mean
        (all experts averaged) | random (one expert per forward)."""
        super().__init__()
        if eval_mode not in ("mean", "random"):
            raise UserError(f"thor: eval_mode={eval_mode!r} is unknown; use mean or random")
        self.num_experts, self.consistency_weight, self.eval_mode = num_experts, consistency_weight, eval_mode
        self.experts = Experts(num_experts, dim, hidden_width(dim, hidden_ratio), bias, dropout)

    def draw(self) -> tuple[int, int]:
        i, j = torch.randint(self.num_experts, (2,)).tolist()
        return i, j

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.num_experts
        if not self.training and self.eval_mode == "mean":
            self.aux_losses, self.load = {}, torch.full((e,), 1.0 / e)
            flat = x.reshape(1, -1, x.shape[-1]).expand(e, -1, -1)
            return self.experts(flat).mean(0).view(x.shape)
        i, j = self.draw()
        y = self.experts.one(i, x)
        self.load = torch.nn.functional.one_hot(torch.tensor(i), e).float()
        self.aux_losses = {}
        if self.training:
            other = y if j == i else self.experts.one(j, x)
            self.aux_losses = {"moe_consistency": self.consistency_weight * (y - other).pow(2).mean()}
        return y
