"""Top-k routed experts (Shazeer et al. 2017; Switch: Fedus et al. 2022, k=1; V-MoE: Riquelme
et al. 2021, k=2), with expert capacity.

    p = softmax(W_r x)                      router probabilities over E experts, per token
    y = sum_{e in top-k(p)} p_e * Expert_e(x)     (tokens an expert has no room for skip it)

Capacity: each expert takes at most C = ceil(capacity_factor * k * N / E) of the N tokens of
a batch (capacity_factor=null: no limit). Slots fill choice by choice (every token's first
choice before any second choice); within a choice, tokens go in order ("token": position in
the flattened batch, so an earlier token of a sequence is never displaced by a later one:
causal-safe) or by their top router probability ("batch": batch-prioritised routing, V-MoE,
which needs the whole batch and so refuses causal use). A token whose every choice overflows
passes through as zero (the block's residual carries it); `dropped` counts such assignments.

Auxiliary losses (added to the task loss, logged as train/moe_balance, train/moe_z):
    balance = E * sum_e f_e * P_e      f_e: share of tokens whose first choice is e,
                                       P_e: mean router probability of e   (Switch, eq. 4)
    z       = mean_tokens (logsumexp(W_r x))^2                            (ST-MoE, Zoph 2022)
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.layers.build import ANY_TASK
from labformer.layers.moe.base import Experts, MoELayer, hidden_width
from labformer.registry import register


def balance_loss(probs: torch.Tensor, first_choice: torch.Tensor) -> torch.Tensor:
    """Switch's load-balancing loss: E * sum_e f_e P_e (probs [N,E], first_choice [N])."""
    num_experts = probs.shape[1]
    share = torch.bincount(first_choice, minlength=num_experts).to(probs.dtype) / len(first_choice)
    return num_experts * (share * probs.mean(0)).sum()


def assign_slots(choices: torch.Tensor, num_experts: int, capacity: int,
                 order: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Slot of every (token, choice) in its expert's buffer and whether it fits.

    choices [N,k] expert ids; order: token priority (a permutation of 0..N-1, default 0..N-1).
    Returns position [N,k] (0-based within the expert) and keep [N,k] (position < capacity).
    """
    n, k = choices.shape
    order = torch.arange(n, device=choices.device) if order is None else order
    filled = torch.zeros(num_experts, dtype=torch.long, device=choices.device)
    position = torch.empty_like(choices)
    for j in range(k):  # all first choices, then all second choices, ...
        onehot = F.one_hot(choices[order, j], num_experts)  # [N,E] in priority order
        ahead = onehot.cumsum(0) - onehot + filled  # tokens already in each expert before this one
        position[order, j] = (ahead * onehot).sum(1)
        filled = filled + onehot.sum(0)
    return position, position < capacity


@register("moe_topk", task=ANY_TASK, kind="ffn", causal=True,
          paper="Shazeer et al. 2017; Fedus et al. 2022 (Switch); Riquelme et al. 2021 (V-MoE)")
class TopKMoE(MoELayer):
    def __init__(self, dim: int, hidden_ratio: float = 4.0, dropout: float = 0.0, bias: bool = True,
                 num_experts: int = 8, k: int = 1, capacity_factor: float | None = 1.25,
                 priority: Literal["token", "batch"] = "token", balance_weight: float = 0.01,
                 z_weight: float = 1e-3, router_noise: float = 0.0, causal: bool = False) -> None:
        """num_experts: E; k: experts per token (1: Switch, 2: V-MoE); capacity_factor: expert buffer
        size relative to an even split (null: no limit, no dropping); priority: token | batch
        (batch-prioritised routing); balance_weight / z_weight: weights of the auxiliary losses;
        router_noise: std of Gaussian noise on the router logits in training (V-MoE: 1/E)."""
        super().__init__()
        if not 1 <= k <= num_experts:
            raise UserError(f"moe_topk: k={k} must be between 1 and num_experts={num_experts}")
        if priority not in ("token", "batch"):
            raise UserError(f"moe_topk: priority={priority!r} is unknown; use token or batch")
        if capacity_factor is not None and capacity_factor <= 0:
            raise UserError(f"moe_topk: capacity_factor={capacity_factor} must be > 0 (or null for no limit)")
        if causal and priority == "batch" and capacity_factor is not None:
            raise UserError("moe_topk: batch-prioritised routing lets a later token take an earlier token's slot, "
                            "so it cannot be causal. Fix: priority=token, or capacity_factor=null")
        self.num_experts, self.k, self.capacity_factor, self.priority = num_experts, k, capacity_factor, priority
        self.balance_weight, self.z_weight, self.router_noise = balance_weight, z_weight, router_noise
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.experts = Experts(num_experts, dim, hidden_width(dim, hidden_ratio), bias, dropout)
        self.experts.active = float(k)

    def capacity(self, tokens: int) -> int:
        if self.capacity_factor is None:
            return tokens
        return max(1, math.ceil(self.capacity_factor * self.k * tokens / self.num_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        n, e = tokens.shape[0], self.num_experts
        logits = self.router(tokens).float()
        if self.training and self.router_noise > 0:
            logits = logits + torch.randn_like(logits) * self.router_noise
        probs = logits.softmax(-1)
        gates, choices = probs.topk(self.k, dim=-1)  # [N,k]
        order = gates[:, 0].argsort(descending=True, stable=True) if self.priority == "batch" else None
        capacity = self.capacity(n)
        position, keep = assign_slots(choices, e, capacity, order)

        slot = (choices * capacity + position)[keep]  # flat slot in the [E*C] buffer
        token = torch.arange(n, device=x.device)[:, None].expand(-1, self.k)[keep]
        buffer = tokens.new_zeros(e * capacity, shape[-1]).index_copy(0, slot, tokens[token])
        out = self.experts(buffer.view(e, capacity, -1)).view(e * capacity, -1)
        weighted = out[slot] * gates[keep].to(out.dtype)[:, None]
        y = tokens.new_zeros(n, shape[-1]).index_add(0, token, weighted)

        self.load = torch.bincount(choices[keep], minlength=e).float().detach() / max(1, n * self.k)
        self.dropped = float(1 - keep.float().mean())
        self.aux_losses = {"moe_balance": self.balance_weight * balance_loss(probs, choices[:, 0]),
                           "moe_z": self.z_weight * torch.logsumexp(logits, -1).pow(2).mean()}
        return y.view(shape)
