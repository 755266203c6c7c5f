"""Soft MoE (Puigcerver et al., ICLR 2024): experts process slots, each slot a convex
combination of all tokens of a sequence, and each token's output a convex combination of
all slots' outputs. Nothing is dropped and every expert sees every token (softly).

    logits = X Phi                       X [T,D] (one sequence), Phi [D, E*S] (S slots per expert)
    Dispatch = softmax over tokens (columns sum to 1);   slots = Dispatch^T X        [E*S, D]
    Combine  = softmax over slots  (rows sum to 1);      Y = Combine * Expert(slots)  [T, D]

With `normalize` (the paper's choice at scale), X's rows and Phi's columns are l2-normalised
and the logits multiplied by a learned scale. A slot mixes every token of the sequence, so
token t's output depends on later tokens: Soft MoE cannot be causal and refuses to be.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.layers.build import ANY_TASK
from labformer.layers.moe.base import Experts, MoELayer, hidden_width
from labformer.registry import register


@register("soft_moe", task=ANY_TASK, kind="ffn", causal=False, paper="Puigcerver et al. 2024, From Sparse to Soft MoE")
class SoftMoE(MoELayer):
    def __init__(self, dim: int, hidden_ratio: float = 4.0, dropout: float = 0.0, bias: bool = True,
                 num_experts: int = 8, slots_per_expert: int = 1, normalize: bool = True,
                 causal: bool = False) -> None:
        """num_experts: E; slots_per_expert: S (E*S slots per sequence); normalize: l2-normalised tokens
        and slot parameters with a learned scale."""
        super().__init__()
        if causal:
            raise UserError("soft_moe mixes every token of a sequence into each slot, so a token's output depends "
                            "on later tokens: it cannot be used in a causal (decoder) model. Fix: model.ffn=moe_topk "
                            "or model.ffn=thor")
        if slots_per_expert < 1:
            raise UserError(f"soft_moe: slots_per_expert={slots_per_expert} must be >= 1")
        self.num_experts, self.slots = num_experts, slots_per_expert
        self.normalize = normalize
        self.phi = nn.Parameter(torch.randn(dim, num_experts * slots_per_expert) / dim ** 0.5)
        self.scale = nn.Parameter(torch.ones(())) if normalize else None
        self.experts = Experts(num_experts, dim, hidden_width(dim, hidden_ratio), bias, dropout)
        # Each slot passes through one expert (compute per slot as in top-1 routing); a token's output then
        # mixes every expert's slot outputs, but counting those would make Soft MoE look dense.
        self.experts.active = 1.0

    def weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(dispatch, combine), each [B, T, E*S]: dispatch sums to 1 over T, combine over E*S."""
        phi = self.phi
        if self.normalize:
            x, phi = F.normalize(x, dim=-1), self.scale * F.normalize(phi, dim=0)
        logits = torch.einsum("btd,dn->btn", x, phi).float()
        return logits.softmax(dim=1), logits.softmax(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise UserError(f"soft_moe needs token sequences [B, T, D]; got a tensor of shape {tuple(x.shape)}")
        b, _, d = x.shape
        e, s = self.num_experts, self.slots
        dispatch, combine = self.weights(x)
        slots = torch.einsum("btn,btd->bnd", dispatch.to(x.dtype), x)  # [B, E*S, D]
        per_expert = slots.view(b, e, s, d).transpose(0, 1).reshape(e, b * s, d)
        out = self.experts(per_expert).view(e, b, s, d).transpose(0, 1).reshape(b, e * s, d)
        self.load = combine.detach().view(-1, e, s).sum(-1).mean(0)  # each expert's share of the output weight
        self.aux_losses = {}
        return torch.einsum("btn,bnd->btd", combine.to(x.dtype), out)
