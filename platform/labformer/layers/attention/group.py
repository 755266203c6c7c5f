"""Group attention (Liang et al., "RITA: Group Attention is All You Need for Timeseries Analytics",
SIGMOD 2024): the keys of each head are clustered into G groups and every key is replaced by its
group's centroid, so the N-way softmax becomes a G-way softmax weighted by the group sizes.

Per head, with keys k_j and values v_j (j = 1..N), an assignment g(j) in {1..G} from k-means on the
keys, n_g = |{j : g(j) = g}|, c_g = (1/n_g) sum_{g(j)=g} k_j and s = 1/sqrt(d_h):

    o_i = sum_j exp(s q_i.c_g(j)) v_j / sum_j exp(s q_i.c_g(j))          (each key -> its centroid)
        = sum_g a_ig vbar_g,   a_ig = n_g exp(s q_i.c_g) / sum_h n_h exp(s q_i.c_h),
                               vbar_g = (1/n_g) sum_{g(j)=g} v_j

computed as softmax_g(s q_i.c_g + log n_g) @ vbar (empty groups: log 0 = -inf, weight 0). When every
key is its own group (G = N, distinct keys) or the keys of a group are identical, c_g(j) = k_j and
this is exactly softmax attention. Cost O(N G d_h) for the scores and each k-means step.

Clustering: G = min(groups, N); centroids start at G farthest-point seeds (the first key, then each
time the key farthest from all seeds so far), then `iters` Lloyd steps; a group left empty is
re-seeded with the key farthest from its centroid. The assignment carries no gradient; the
centroids and value means are recomputed from it differentiably, so q, k and v all learn.
Attention dropout drops group weights a_ig.

Adaptive G (`adaptive=true`, training mode only): after each forward the bound on how far a stand-in
key can move a score, e = mean_i |q_i| * mean_j |k_j - c_g(j)| * s (averaged over batch and heads;
|s q.k_j - s q.c_g(j)| <= s |q| |k_j - c_g(j)|), decides the next G: every group split (G -> 2G, at most
max_len) when e > epsilon, pairs merged (G -> G/2, at least 1) when e < epsilon / 2 (the gap damps
flipping), else unchanged; so G hovers at the smallest power-of-two step meeting epsilon (G >= N is
exact, e = 0, so it is always tried lower). G is a buffer (`num_groups`), so a checkpoint restores it.
The paper's scheduler instead derives a distance threshold from its error bound and adapts the
groups (and the batch size) to meet it; this rule is a simpler, global stand-in.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.layers.attention.base import QKVAttention, refuse_causal
from labformer.layers.build import ANY_TASK
from labformer.registry import register


def group_sums(x: torch.Tensor, assign: torch.Tensor, groups: int) -> torch.Tensor:
    """sum_{g(j)=g} x_j: x[B,H,N,D], assign[B,H,N] -> [B,H,G,D] (differentiable in x)."""
    out = x.new_zeros(*x.shape[:2], groups, x.shape[-1])
    return out.scatter_add(2, assign[..., None].expand_as(x), x)


def group_counts(assign: torch.Tensor, groups: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """n_g [B,H,G]."""
    ones = torch.ones(assign.shape, dtype=dtype, device=assign.device)
    return ones.new_zeros(*assign.shape[:2], groups).scatter_add(2, assign, ones)


def nearest(keys: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest centroid and the squared distance to it, via |k|^2 - 2 k.c + |c|^2."""
    dist = (centroids * centroids).sum(-1)[..., None, :] - 2 * keys @ centroids.transpose(-1, -2)
    best, assign = dist.min(-1)
    return assign, (best + (keys * keys).sum(-1)).clamp_min(0)


def farthest_points(keys: torch.Tensor, groups: int) -> torch.Tensor:
    """Initial centroids [B,H,G,D]: the first key, then repeatedly the key farthest from those chosen.

    Deterministic, and every well-separated cluster gets a seed (evenly spaced or random seeds can
    put two in one cluster, which Lloyd steps rarely undo); with G = N distinct keys it picks them all."""
    pick = torch.zeros(*keys.shape[:2], groups, dtype=torch.long, device=keys.device)
    dist = (keys - keys[:, :, :1]).pow(2).sum(-1)
    for g in range(1, groups):
        pick[..., g] = dist.argmax(-1)
        chosen = keys.gather(2, pick[..., g, None, None].expand(*keys.shape[:2], 1, keys.shape[-1]))
        dist = torch.minimum(dist, (keys - chosen).pow(2).sum(-1))
    return keys.gather(2, pick[..., None].expand(*pick.shape, keys.shape[-1]))


@torch.no_grad()
def kmeans(keys: torch.Tensor, groups: int, iters: int) -> torch.Tensor:
    """Assignment [B,H,N] of the keys [B,H,N,D] to `groups` clusters (deterministic, no gradient)."""
    keys = keys.detach().to(torch.promote_types(keys.dtype, torch.float32))
    n = keys.shape[2]
    centroids = farthest_points(keys, groups)
    for _ in range(iters):
        assign, dist = nearest(keys, centroids)
        counts = group_counts(assign, groups, keys.dtype)
        means = group_sums(keys, assign, groups) / counts.clamp_min(1)[..., None]
        # Empty groups restart at the worst-served keys (farthest first), one key each.
        empty = counts == 0
        rank = (empty.long().cumsum(-1) - 1).clamp(0, n - 1)
        far = dist.argsort(-1, descending=True).gather(-1, rank)
        reseed = keys.gather(2, far[..., None].expand(*far.shape, keys.shape[-1]))
        centroids = torch.where(empty[..., None], reseed, means)
    return nearest(keys, centroids)[0]


@register("group", task=ANY_TASK, kind="attention", causal=False, complexity="O(N G)",
          paper="Liang et al. 2024, RITA: Group Attention is All You Need for Timeseries Analytics")
class GroupAttention(QKVAttention):
    def __init__(self, dim: int, num_heads: int, causal: bool = False, max_len: int = 1024, dropout: float = 0.0,
                 bias: bool = True, groups: int = 32, iters: int = 3, adaptive: bool = False,
                 epsilon: float = 0.5) -> None:
        """groups: G, the number of key groups per head (initial G when adaptive; a sequence of N <= G
        tokens is attended exactly); iters: Lloyd steps of the k-means; adaptive: grow/shrink G in
        training from the score bound e vs epsilon (see the module docstring); epsilon: that bound."""
        refuse_causal("group", causal)
        super().__init__(dim, num_heads, causal, max_len, dropout, bias)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise UserError(f"model.attention_kwargs.groups must be an integer >= 1 (key groups per head), "
                            f"got {groups!r}; e.g. model.attention_kwargs.groups=16")
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
            raise UserError(f"model.attention_kwargs.iters must be an integer >= 0 (k-means steps), got {iters!r}; "
                            f"e.g. model.attention_kwargs.iters=3")
        if not epsilon > 0:
            raise UserError(f"model.attention_kwargs.epsilon must be > 0 (the bound adaptive G aims for), "
                            f"got {epsilon!r}; e.g. model.attention_kwargs.epsilon=0.5")
        self.iters, self.adaptive, self.epsilon = iters, adaptive, float(epsilon)
        # A buffer, not an attribute: the adapted G travels with the checkpoint.
        self.register_buffer("num_groups", torch.tensor(groups, dtype=torch.long))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        groups = min(int(self.num_groups), k.shape[2])
        assign = kmeans(k, groups, self.iters)
        # Group statistics in (at least) float32: sums of many half-precision keys lose digits.
        work = torch.promote_types(k.dtype, torch.float32)
        counts = group_counts(assign, groups, work)
        centroids = group_sums(k.to(work), assign, groups) / counts.clamp_min(1)[..., None]
        values = group_sums(v.to(work), assign, groups) / counts.clamp_min(1)[..., None]
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores = (q.to(work) @ centroids.transpose(-1, -2)) * scale + counts.log()[..., None, :]
        weights = F.dropout(scores.softmax(-1), self.attn_dropout, self.training)
        if self.training and self.adaptive:
            self.adapt(q, k, centroids, assign, groups, scale)
        return (weights @ values).to(v.dtype)

    @torch.no_grad()
    def adapt(self, q: torch.Tensor, k: torch.Tensor, centroids: torch.Tensor, assign: torch.Tensor,
              groups: int, scale: float) -> None:
        """Split every group (2G) when the score bound exceeds epsilon, merge pairs (G/2) under epsilon/2."""
        stand_in = centroids.detach().gather(2, assign[..., None].expand(*assign.shape, k.shape[-1]))
        radius = (k.detach().to(stand_in.dtype) - stand_in).norm(dim=-1).mean(-1)
        bound = (q.detach().to(stand_in.dtype).norm(dim=-1).mean(-1) * radius * scale).mean()
        # Chosen on the device, no host sync here (the next forward reads G anyway).
        self.num_groups.copy_(torch.where(bound > self.epsilon, min(2 * groups, self.max_len),
                                          torch.where(bound < self.epsilon / 2, max(groups // 2, 1), groups)))
