"""Projector / predictor MLPs shared by the objectives, and the EMA target update."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2, last_bn: bool = False) -> nn.Sequential:
    """Linear-BN-ReLU blocks, then a last Linear (optionally with an affine-free BN, as SimSiam's projector)."""
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        dim = hidden
    mods.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        mods.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*mods)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy that receives no gradient (an EMA target); kept in train mode like the online copy."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameters and float buffers."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for t, o in zip(target.buffers(), online.buffers()):
        if t.dtype.is_floating_point:
            t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
        else:
            t.copy_(o)
