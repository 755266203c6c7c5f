"""What every mixture-of-experts layer shares: a bank of expert MLPs run as one batched
matmul, the auxiliary losses a layer hands to the task, and its expert-load statistics.

Each MoE layer (kind "ffn", chosen by name like attention) maps [..., D] -> [..., D]. On
every forward it records
  - `aux_losses`: {name: weighted loss tensor} (e.g. load balancing, router z-loss); the
    task adds their sum to the training loss and logs each (`collect_aux_losses`);
  - `load`: the share of routed tokens (or slot weight) each expert received [E];
  - `dropped`: the share of (token, choice) assignments that found no room (top-k only).

Sharding (out of scope here, one device per layer): experts are the leading axis of the
weights [E, ...], so expert parallelism would split that axis over devices and replace the
dispatch/combine index ops with two all-to-all exchanges of the [E, capacity, D] buffers.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError


class Experts(nn.Module):
    """E independent two-layer GELU MLPs, D -> H -> D, as batched weights [E, ...]."""

    def __init__(self, num_experts: int, dim: int, hidden: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if num_experts < 1 or hidden < 1:
            raise UserError(f"an MoE layer needs num_experts >= 1 and a hidden width >= 1 (got {num_experts}, "
                            f"{hidden}); fix model.ffn_kwargs / the backbone's MoE settings")
        self.num_experts, self.dim, self.hidden = num_experts, dim, hidden
        self.active: float = 1.0  # experts one input visits (its layer sets it: k for top-k; a slot in Soft MoE)
        self.w1 = nn.Parameter(torch.empty(num_experts, dim, hidden))
        self.w2 = nn.Parameter(torch.empty(num_experts, hidden, dim))
        self.b1 = nn.Parameter(torch.zeros(num_experts, 1, hidden)) if bias else None
        self.b2 = nn.Parameter(torch.zeros(num_experts, 1, dim)) if bias else None
        self.drop = nn.Dropout(dropout)
        # nn.Linear's default init, per expert: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        nn.init.uniform_(self.w1, -1 / math.sqrt(dim), 1 / math.sqrt(dim))
        nn.init.uniform_(self.w2, -1 / math.sqrt(hidden), 1 / math.sqrt(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [E, C, D] (C inputs per expert) -> [E, C, D]."""
        h = torch.bmm(x, self.w1) if self.b1 is None else torch.baddbmm(self.b1, x, self.w1)
        h = self.drop(F.gelu(h))
        return torch.bmm(h, self.w2) if self.b2 is None else torch.baddbmm(self.b2, h, self.w2)

    def one(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Expert `index` alone on x [..., D]."""
        h = x @ self.w1[index] + (0 if self.b1 is None else self.b1[index, 0])
        h = self.drop(F.gelu(h))
        return h @ self.w2[index] + (0 if self.b2 is None else self.b2[index, 0])

    def inactive_parameters(self) -> int:
        """Expert parameters one token does not pass through (it visits `active` of the E experts)."""
        per_expert = sum(p[0].numel() for p in (self.w1, self.w2, self.b1, self.b2) if p is not None)
        return round(per_expert * (self.num_experts - self.active))


class MoELayer(nn.Module):
    """Base of the MoE layers: the statistics and losses of the last forward."""

    experts: Experts

    def __init__(self) -> None:
        super().__init__()
        self.aux_losses: dict[str, torch.Tensor] = {}
        self.load: torch.Tensor | None = None
        self.dropped: float = 0.0


class SharedMoE(MoELayer):
    """One use of an MoE layer shared across depth (WideNet): each use keeps its own losses and
    statistics, and the shared layer itself is not counted again (`moe_layers`)."""

    def __init__(self, layer: MoELayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer(x)
        self.aux_losses, self.load, self.dropped = self.layer.aux_losses, self.layer.load, self.layer.dropped
        return y


def hidden_width(dim: int, hidden_ratio: float) -> int:
    if hidden_ratio <= 0:
        raise UserError(f"ffn hidden_ratio must be > 0, got {hidden_ratio}")
    return max(1, int(round(dim * hidden_ratio)))


def moe_layers(module: nn.Module) -> list[MoELayer]:
    """The MoE layers whose losses count: every use of a shared layer, not the shared layer again."""
    layers = [m for m in module.modules() if isinstance(m, MoELayer)]
    shared = {id(m.layer) for m in layers if isinstance(m, SharedMoE)}
    return [m for m in layers if id(m) not in shared]


def collect_aux_losses(layers: list[MoELayer]) -> dict[str, torch.Tensor]:
    """Each auxiliary loss summed over the layers (their last forward), then cleared."""
    out: dict[str, torch.Tensor] = {}
    for layer in layers:
        for name, value in layer.aux_losses.items():
            out[name] = out[name] + value if name in out else value
        layer.aux_losses = {}
    return out


def active_parameters(model: nn.Module) -> int:
    """Parameters one input token passes through: experts it is not routed to do not count
    (each expert bank once, however often it is shared)."""
    total = sum(p.numel() for p in model.parameters())
    return total - sum(m.inactive_parameters() for m in model.modules() if isinstance(m, Experts))
