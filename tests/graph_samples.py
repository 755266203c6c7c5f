"""Tiny graphs for the graph tests (a few dozen nodes: every model runs in milliseconds)."""
from __future__ import annotations

import torch
from torch_geometric.data import Data

IN_DIM, EDGE_DIM, LAP, RW = 3, 2, 4, 3


def tiny_graph(n: int, seed: int, graph_label: bool = False) -> Data:
    g = torch.Generator().manual_seed(seed)
    ring = torch.arange(n)
    src = torch.cat([ring, torch.randint(0, n, (n,), generator=g)])
    dst = torch.cat([(ring + 1) % n, torch.randint(0, n, (n,), generator=g)])
    keep = src != dst
    src, dst = src[keep], dst[keep]
    edge_index = torch.unique(torch.stack([torch.cat([src, dst]), torch.cat([dst, src])]), dim=1)
    y = torch.randint(0, 2, (1,) if graph_label else (n,), generator=g)
    return Data(x=torch.randn(n, IN_DIM, generator=g), edge_index=edge_index,
                edge_attr=torch.randn(edge_index.shape[1], EDGE_DIM, generator=g), y=y,
                lap_pe=torch.randn(n, LAP, generator=g), rw_se=torch.rand(n, RW, generator=g), num_nodes=n)
