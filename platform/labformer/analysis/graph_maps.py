"""Attention maps of a batch of graphs: the query x key probabilities among the tokens of graph 0.

The graphs of a batch differ in size and attend only within themselves, so one graph is shown: its
nodes first (in PyG's order), then the tokens the model adds for it (Exphormer's virtual nodes,
TokenGT's edge tokens), at most `limit` of them so the picture stays readable; the title says which.
"""
from __future__ import annotations

from typing import Any

import torch

from labformer.analysis.attention import Call, Maps


def nodes_of_graph_zero(batch: Any) -> int:
    ptr = getattr(batch, "ptr", None)
    if ptr is not None:
        return int(ptr[1])
    graph = getattr(batch, "batch", None)
    return int((graph == 0).sum()) if graph is not None else int(batch.num_nodes)


def from_edges(call: Call, nodes: int, num_nodes: int) -> torch.Tensor:
    """[H, T, T] over graph 0's tokens: its nodes (indices 0..nodes-1 of the batch) and the tokens past the
    batch's nodes that attend to or from them (virtual nodes); repeated edges add up, as in the softmax."""
    query, key = call.pairs
    extra = torch.cat([key[query < nodes], query[key < nodes]])
    tokens = torch.cat([torch.arange(nodes, device=query.device), extra[extra >= num_nodes].unique()])
    size = int(call.pairs.max()) + 1 if call.pairs.numel() else 0
    pos = torch.full((max(size, nodes),), -1, dtype=torch.long, device=query.device)
    pos[tokens] = torch.arange(len(tokens), device=query.device)
    q, k = pos[query], pos[key]
    mine = (q >= 0) & (k >= 0)
    t, heads = len(tokens), call.probs.shape[1]
    dense = torch.zeros(heads, t * t, device=query.device)
    dense.index_add_(1, q[mine] * t + k[mine], call.probs[mine].float().T)
    return dense.view(heads, t, t)


def dense_item(call: Call) -> torch.Tensor:
    """[H, T, T]: item 0 of a dense call, its padding left out (TokenGT's real tokens come first)."""
    probs = call.probs[0].float()
    if call.keep is None:
        return probs
    real = call.keep[0].nonzero().flatten()
    return probs[:, real][:, :, real]


def span(a: int, b: int) -> str:
    return f"{a}" if a == b else f"{a}-{b}"


def first_graph(calls: list[Call], batch: Any, limit: int = 64) -> Maps:
    """Maps [1, H, T, T] of graph 0 of `batch` (T at most `limit`), and what its tokens are."""
    nodes = nodes_of_graph_zero(batch)
    maps = [from_edges(c, nodes, int(batch.num_nodes)) if c.pairs is not None else dense_item(c) for c in calls]
    total = maps[0].shape[-1] if maps else 0
    shown = min(total, limit)
    layers = [(c.name, m[None, :, :shown, :shown].cpu()) for c, m in zip(calls, maps)]
    if maps and calls[0].pairs is None and calls[0].keep is None:  # a dense model batching graphs its own way
        what = f"tokens 0-{shown - 1}: item 0 of the model's own batch"
    else:
        what = f"tokens {span(0, min(nodes, shown) - 1)}: graph 0's nodes"
        if total > nodes:
            added = "virtual nodes" if calls[0].pairs is not None else "edge tokens"
            what += f", {span(nodes, total - 1)}: {added} the model adds"
    if shown < total:
        what += f"; the first {shown} of its {total} tokens shown"
    return Maps(layers, what)
