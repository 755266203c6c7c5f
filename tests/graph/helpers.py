"""Tiny graphs for the graph tests (a few dozen nodes: every model runs in milliseconds)."""
from __future__ import annotations

import torch
from omegaconf import OmegaConf
from torch_geometric.data import Batch, Data

from labformer import CONF_DIR, registry

IN_DIM, EDGE_DIM, LAP, RW = 3, 2, 4, 3
SMALL = {"hidden": 16, "num_layers": 2, "heads": 2, "local_layers": 2, "global_layers": 1}


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


def build(name: str, **extra):
    """The registered model, from its conf/model/<name>.yaml shrunk to test size."""
    entry = registry.get(name, task="graph")
    cfg = OmegaConf.to_container(OmegaConf.load(entry.config_file(CONF_DIR)))
    cfg.pop("name")
    cfg.update({k: v for k, v in SMALL.items() if k in cfg})
    cfg.update(extra)
    return registry.create("graph", name, in_dim=IN_DIM, edge_dim=EDGE_DIM, lap_pe_dim=LAP, rw_se_dim=RW, **cfg)


def prepare(model, graphs: list[Data]) -> Batch:
    """Apply the model's own preprocessing (as the DataModule would) and batch."""
    transform = getattr(model, "data_transform", None)
    if transform is not None:
        graphs = [transform(g) for g in graphs]
    return Batch.from_data_list(graphs)
