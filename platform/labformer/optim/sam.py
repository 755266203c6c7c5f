"""Sharpness-aware minimisation (SAM, Foret et al. ICLR 2021) around any torch optimiser.

    eps   = rho * g(w) / ||g(w)||            (ascent: the worst nearby point, to first order)
    w_new = step(w, g(w + eps))              (descent from w, with the gradient found at w + eps)

ASAM (Kwon et al. 2021, `adaptive=True`) scales the ascent per parameter by |w|, which makes
rho scale-invariant. Two forward/backward passes per step; the optimiser (Adam, AdamW, ...)
is unchanged, so SAM works with any backbone. Used by SAMformer (Ilbert et al. 2024).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch


@torch.no_grad()
def ascend(params: Iterable[torch.nn.Parameter], rho: float, adaptive: bool = False
           ) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """Move every parameter with a gradient to w + eps in place; returns the (param, eps) to undo."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return []
    scaled = [(p.abs() * p.grad if adaptive else p.grad) for p in params]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
    scale = rho / (norm + 1e-12)
    moved = []
    for p, s in zip(params, scaled):
        eps = (p.abs() * s if adaptive else s) * scale  # ASAM: T_w^2 g / ||T_w g||
        p.add_(eps)
        moved.append((p, eps))
    return moved


@torch.no_grad()
def restore(moved: list[tuple[torch.nn.Parameter, torch.Tensor]]) -> None:
    """Back from w + eps to w (the gradients computed at w + eps stay in .grad)."""
    for p, eps in moved:
        p.sub_(eps)


def sam_step(params: list[torch.nn.Parameter], closure: Callable[[], torch.Tensor], optimizer,
             rho: float, adaptive: bool = False,
             check: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
    """One SAM update. `closure()` runs forward + backward and returns the loss.

    Returns the loss at w (the number to report). `check(loss)` runs before any weight
    moves, e.g. to stop on a non-finite loss with the weights untouched.
    """
    optimizer.zero_grad()
    loss = closure()
    if check is not None:
        check(loss)
    moved = ascend(params, rho, adaptive)
    optimizer.zero_grad()
    closure()  # the gradient at w + eps
    restore(moved)
    optimizer.step()
    optimizer.zero_grad()
    return loss
