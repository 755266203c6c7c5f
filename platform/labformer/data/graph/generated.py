"""Generated graph datasets (no download): SBM PATTERN and CLUSTER (Dwivedi et al. 2020), a
long-range toy task and a directed one, made with a seed and cached as one file per setting."""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch_geometric.data import Data

from labformer.data.graph import generators
from labformer.data.graph.base import SPLITS, GraphDataModule
from labformer.data.graph.cache import pack, save_atomic, unpack
from labformer.errors import UserError
from labformer.registry import register

log = logging.getLogger("labformer")


class GeneratedGraphs(GraphDataModule):
    """Graphs made by a generator with a seed, cached as one file per setting."""

    keys: tuple[str, ...] = ("x", "edge_index", "y")  # what the cache file keeps of each graph

    def __init__(self, train_graphs: int, val_graphs: int, test_graphs: int, seed: int = 0, **base: Any):
        """seed: the generator's (the graphs are cached under cache_dir, one file per setting)."""
        super().__init__(**base)
        for key, value in (("train_graphs", train_graphs), ("val_graphs", val_graphs), ("test_graphs", test_graphs)):
            if value < 1:
                raise UserError(f"data.{key}={value} must be at least 1")
        self.sizes = {"train": train_graphs, "val": val_graphs, "test": test_graphs}
        self.seed = seed

    def generate(self, num_graphs: int, seed: int) -> list[Data]:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "sizes": self.sizes, "seed": self.seed}

    def load(self) -> tuple[list[Data], dict[str, Any]]:
        path = self.cache_dir / f"graphs-{self.dataset_key}.pt"
        if path.is_file():
            graphs = [Data(**row) for row in unpack(torch.load(path, map_location="cpu", weights_only=True))]
        else:
            # One seed per split, so growing the training set leaves val/test unchanged.
            graphs = [g for i, s in enumerate(SPLITS) for g in self.generate(self.sizes[s], self.seed * 1000 + i)]
            save_atomic(pack(graphs, self.keys), path)
            log.info("generated %d %s graphs into %s", len(graphs), self.name, path)
        bounds = torch.tensor([0, *self.sizes.values()]).cumsum(0).tolist()
        return graphs, {s: list(range(bounds[i], bounds[i + 1])) for i, s in enumerate(SPLITS)}


class SBMGraphs(GeneratedGraphs):
    """PATTERN / CLUSTER with size options: community sizes (the paper: 5..35) and, for PATTERN,
    the planted pattern's size (the paper: 20). Edge probabilities stay the paper's, so
    smaller communities give smaller and sparser graphs. community_size: [min, max] nodes per community."""

    def __init__(self, community_size: list[int] | tuple[int, int] = (5, 35), pattern_size: int = 20, **kw: Any):
        super().__init__(**kw)
        lo, hi = (int(v) for v in community_size)
        if not 1 <= lo <= hi or pattern_size < 1:
            raise UserError(f"data.community_size={list(community_size)} must be [min, max] with 1 <= min <= max, "
                            f"and data.pattern_size={pattern_size} >= 1")
        self.community_size, self.pattern_size = (lo, hi), pattern_size

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "community_size": self.community_size, "pattern_size": self.pattern_size}


class PatternDataModule(SBMGraphs):
    name, level, num_classes, metric, num_node_features = "pattern", "node", 2, "balanced_accuracy", 3

    def generate(self, num_graphs: int, seed: int) -> list[Data]:
        return generators.make_pattern(num_graphs, seed, pattern_size=self.pattern_size,
                                      community_size=self.community_size)


class ClusterDataModule(SBMGraphs):
    name, level, num_classes, metric, num_node_features = "cluster", "node", 6, "balanced_accuracy", 7

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in super().settings().items() if k != "pattern_size"}

    def generate(self, num_graphs: int, seed: int) -> list[Data]:
        return generators.make_cluster(num_graphs, seed, community_size=self.community_size)


class LongRangeDataModule(GeneratedGraphs):
    """Are the two marked nodes connected? Two long chains per graph. min_distance: hops between connected
    marked nodes, beyond the reach of a few message-passing layers; min_nodes, max_nodes: nodes per chain."""

    name, level, num_classes, metric, num_node_features = "long_range", "graph", 2, "accuracy", 2

    def __init__(self, min_distance: int = 8, min_nodes: int = 24, max_nodes: int = 40, **kw: Any):
        super().__init__(**kw)
        if min_nodes < 3 * min_distance or max_nodes < min_nodes:
            raise UserError(f"data.min_nodes={min_nodes} is too small for min_distance={min_distance} "
                            f"(need min_nodes >= 3*min_distance and max_nodes >= min_nodes)")
        self.min_distance, self.min_nodes, self.max_nodes = min_distance, min_nodes, max_nodes

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "min_distance": self.min_distance, "nodes": [self.min_nodes, self.max_nodes]}

    def generate(self, num_graphs: int, seed: int) -> list[Data]:
        return generators.make_long_range(num_graphs, seed, self.min_nodes, self.max_nodes, self.min_distance)


class DirectedOrderDataModule(GeneratedGraphs):
    """Which half of a directed path is a node in? (generators.py). Direction-blind models are at chance;
    `directed_edge_index` carries the direction to the magnetic PE (data.mag_pe_dim)."""

    name, level, num_classes, metric, num_node_features = "directed_order", "node", 2, "accuracy", 1
    keys = ("x", "edge_index", "directed_edge_index", "y")

    def __init__(self, min_nodes: int = 16, max_nodes: int = 48, **kw: Any):
        super().__init__(**kw)
        if not 2 <= min_nodes <= max_nodes:
            raise UserError(f"data.min_nodes={min_nodes}, data.max_nodes={max_nodes}: need 2 <= min_nodes <= max_nodes")
        self.min_nodes, self.max_nodes = min_nodes, max_nodes

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "nodes": [self.min_nodes, self.max_nodes]}

    def generate(self, num_graphs: int, seed: int) -> list[Data]:
        return generators.make_directed_order(num_graphs, seed, self.min_nodes, self.max_nodes)


# CPU-sized defaults (a default run takes seconds); the benchmark's sizes (10000 training graphs,
# communities of 5..35: ~8x the edges, PATTERN's 20-node pattern) are experiment=pattern_full / cluster_full.
register("pattern", task="graph", kind="dataset", embedded=True,
         args=dict(train_graphs=256, val_graphs=64, test_graphs=64, community_size=[5, 12], pattern_size=8))(
    PatternDataModule)
register("cluster", task="graph", kind="dataset", embedded=True,
         args=dict(train_graphs=256, val_graphs=64, test_graphs=64, community_size=[5, 12]))(ClusterDataModule)
register("long_range", task="graph", kind="dataset", embedded=True,
         # Laplacian eigenvectors: their null space marks the connected components.
         args=dict(train_graphs=1000, val_graphs=200, test_graphs=200, lap_pe_dim=8))(LongRangeDataModule)
# q = 0.02: the phase 2 pi q per edge turns once over 50 edges, so it does not wrap along these paths (<= 48 nodes).
register("directed_order", task="graph", kind="dataset", embedded=True,
         args=dict(train_graphs=500, val_graphs=100, test_graphs=100, mag_pe_dim=8, mag_pe_q=0.02))(
    DirectedOrderDataModule)
