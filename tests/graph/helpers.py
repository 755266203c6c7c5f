"""Graph-test helpers: registered models at test size, and the shared tiny graphs."""
from __future__ import annotations

from torch_geometric.data import Batch, Data

from labformer import registry
from labformer.config_store import entry_config

from graph_samples import EDGE_DIM, IN_DIM, LAP, RW, tiny_graph  # noqa: F401  (the graph tests import them here)

SMALL = {"hidden": 16, "num_layers": 2, "heads": 2, "local_layers": 2, "global_layers": 1}


def build(name: str, **extra):
    """The registered model with its config (`model=<name>`) shrunk to test size."""
    cfg = entry_config(registry.get(name, task="graph"))
    cfg.pop("name")
    cfg.update({k: v for k, v in SMALL.items() if k in cfg})
    cfg.update(extra)
    return registry.create("graph", name, in_dim=IN_DIM, edge_dim=EDGE_DIM, lap_pe_dim=LAP, rw_se_dim=RW, **cfg)


def same_alone_and_batched(model, sizes: tuple[int, int] = (6, 7)) -> bool:
    """Whether the first graph's outputs are the same alone and batched with a second one (no leak across graphs)."""
    import torch

    a, b = tiny_graph(sizes[0], seed=0), tiny_graph(sizes[1], seed=1)
    with torch.no_grad():
        alone = model(Batch.from_data_list([a]))
        together = model(Batch.from_data_list([a, b]))[:sizes[0]]
    return torch.allclose(alone, together, atol=1e-5)


def prepare(model, graphs: list[Data]) -> Batch:
    """Apply the model's own preprocessing (as the DataModule would) and batch."""
    if model.data_transform is not None:
        graphs = [model.data_transform(g) for g in graphs]
    return Batch.from_data_list(graphs)
