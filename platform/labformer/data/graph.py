"""Graph DataModules: PyG `Data` graphs in, PyG `Batch` out.

Contract (the graph task and the backbone builders rely on it): right after `__init__`,
before any file is read or graph generated, a DataModule knows `name`, `level` ("node":
a label per node; "graph": one per graph), `num_classes`, `metric` ("accuracy",
"balanced_accuracy" or "auroc"), `num_node_features`, `num_edge_features` (0: none) and
the encoding sizes `lap_pe_dim` / `rw_se_dim`. Every graph carries float `x` [N, F],
`edge_index` (both directions), optional float `edge_attr` [E, edge_dim], long `y`, and
the requested encodings `lap_pe` / `rw_se`.

Inductive datasets (many graphs) split the graphs; transductive ones (one graph: Cora,
the heterophilous graphs) yield that graph for every split with a boolean `mask` saying
which nodes the split scores.

Preprocessing (encodings, and whatever the backbone asks for through
`set_model_transform`, e.g. Exphormer's expander) runs once over the dataset and is
cached under `cache_dir` (default `<data_dir>/<name>/cache`), keyed by the dataset's
settings and the transform's.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from labformer.data import graph_synthetic as synthetic
from labformer.data.graph_transforms import (CachedTransform, LaplacianPE, RandomWalkSE, apply_cached, pack,
                                             save_atomic, settings_hash, unpack)
from labformer.errors import UserError
from labformer.registry import register

log = logging.getLogger("labformer")
METRICS = ("accuracy", "balanced_accuracy", "auroc")
SPLITS = ("train", "val", "test")


class GraphDataModule(L.LightningDataModule):
    """Shared logic; a subclass sets the class attributes and implements `load`."""

    name: str
    level: str  # "node" | "graph"
    num_classes: int
    metric: str = "accuracy"
    num_node_features: int
    num_edge_features: int = 0
    transductive: bool = False

    def __init__(self, data_dir: str | Path = "data", batch_size: int = 32, num_workers: int = 0,
                 lap_pe_dim: int = 0, rw_se_dim: int = 0, cache_dir: str | None = None, download: bool = True):
        super().__init__()
        for key, value, ok in (("batch_size", batch_size, batch_size >= 1), ("num_workers", num_workers, num_workers >= 0),
                               ("lap_pe_dim", lap_pe_dim, lap_pe_dim >= 0), ("rw_se_dim", rw_se_dim, rw_se_dim >= 0)):
            if not ok:
                raise UserError(f"data.{key}={value!r} is out of range for dataset '{self.name}'. "
                                "Fix: batch_size>=1, num_workers>=0, lap_pe_dim>=0, rw_se_dim>=0.")
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size, self.num_workers, self.download = batch_size, num_workers, download
        self.lap_pe_dim, self.rw_se_dim = lap_pe_dim, rw_se_dim
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.data_dir / self.name / "cache"
        self.model_transform: CachedTransform | None = None
        self.graphs: list[Data] | None = None
        self.split_index: dict[str, Any] = {}  # inductive: graph ids; transductive: node masks
        self._applied: set[str] = set()

    # -- per dataset ---------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Everything that changes the graphs (the cache key of derived data)."""
        return {"name": self.name}

    def load(self) -> tuple[list[Data], dict[str, Any]]:
        """(graphs, split_index); raises MissingDataError when files are missing."""
        raise NotImplementedError

    @property
    def dataset_key(self) -> str:
        return settings_hash(self.settings())

    # -- preprocessing -------------------------------------------------------------------
    def set_model_transform(self, transform: CachedTransform | None) -> None:
        """Preprocessing the backbone needs (applied and cached at the next `setup`)."""
        self.model_transform = transform

    def transforms(self) -> list[CachedTransform]:
        out: list[CachedTransform] = []
        if self.lap_pe_dim:
            out.append(LaplacianPE(self.lap_pe_dim))
        if self.rw_se_dim:
            out.append(RandomWalkSE(self.rw_se_dim))
        if self.model_transform is not None:
            out.append(self.model_transform)
        return out

    def prepare_data(self) -> None:
        pass  # readers download in `load` (locate); nothing to do across processes

    def setup(self, stage: str | None = None) -> None:
        if self.graphs is None:
            self.graphs, self.split_index = self.load()
        for t in self.transforms():
            tag = f"{t.name}:{settings_hash(t.cache_key)}"
            if tag not in self._applied:
                apply_cached(self.graphs, t, self.dataset_key, self.cache_dir)
                self._applied.add(tag)

    def split(self, split: str) -> list[Data]:
        self.setup()
        if self.transductive:
            view = copy.copy(self.graphs[0])  # shares the tensors
            view.mask = self.split_index[split]
            return [view]
        return [self.graphs[i] for i in self.split_index[split]]

    # -- loaders -------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.split(split), batch_size=self.batch_size, shuffle=shuffle and not self.transductive,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def describe(self) -> str:
        if self.graphs is None:
            return f"{self.name}: not loaded yet"
        sizes = " / ".join(f"{s} {int(self.split_index[s].sum()) if self.transductive else len(self.split_index[s])}"
                           for s in SPLITS)
        unit = "nodes" if self.transductive else "graphs"
        return (f"{self.name}: {sizes} {unit}, {self.level}-level, {self.num_classes} classes, "
                f"metric {self.metric}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    __str__ = __repr__


class GeneratedGraphs(GraphDataModule):
    """Graphs made by a generator with a seed, cached as one file per setting."""

    def __init__(self, train_graphs: int, val_graphs: int, test_graphs: int, seed: int = 0, **base: Any):
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
        keys = ("x", "edge_index", "y")
        if path.is_file():
            graphs = [Data(**row) for row in unpack(torch.load(path, map_location="cpu", weights_only=True))]
        else:
            # One seed per split, so growing the training set leaves val/test unchanged.
            graphs = [g for i, s in enumerate(SPLITS) for g in self.generate(self.sizes[s], self.seed * 1000 + i)]
            save_atomic(pack(graphs, keys), path)
            log.info("generated %d %s graphs into %s", len(graphs), self.name, path)
        bounds = torch.tensor([0, *self.sizes.values()]).cumsum(0).tolist()
        return graphs, {s: list(range(bounds[i], bounds[i + 1])) for i, s in enumerate(SPLITS)}


class SBMGraphs(GeneratedGraphs):
    """PATTERN / CLUSTER with size options: community sizes (the paper: 5..35) and, for PATTERN,
    the planted pattern's size (the paper: 20). Edge probabilities stay the paper's, so
    smaller communities give smaller and sparser graphs."""

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
        return synthetic.make_pattern(num_graphs, seed, pattern_size=self.pattern_size,
                                      community_size=self.community_size)


class ClusterDataModule(SBMGraphs):
    name, level, num_classes, metric, num_node_features = "cluster", "node", 6, "balanced_accuracy", 7

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in super().settings().items() if k != "pattern_size"}

    def generate(self, num_graphs: int, seed: int) -> list[Data]:
        return synthetic.make_cluster(num_graphs, seed, community_size=self.community_size)


class LongRangeDataModule(GeneratedGraphs):
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
        return synthetic.make_long_range(num_graphs, seed, self.min_nodes, self.max_nodes, self.min_distance)


# -- registered builders: their signatures are the config schema (conf/data/<name>.yaml) --
@register("pattern", task="graph", kind="dataset", embedded=True)
def pattern(data_dir: str = "data", batch_size: int = 32, num_workers: int = 0, train_graphs: int = 10000,
            val_graphs: int = 2000, test_graphs: int = 2000, seed: int = 0, community_size: list[int] = (5, 35),
            pattern_size: int = 20, lap_pe_dim: int = 0, rw_se_dim: int = 0,
            cache_dir: str | None = None) -> PatternDataModule:
    return PatternDataModule(community_size, pattern_size, train_graphs=train_graphs, val_graphs=val_graphs,
                             test_graphs=test_graphs, seed=seed, data_dir=data_dir, batch_size=batch_size,
                             num_workers=num_workers, lap_pe_dim=lap_pe_dim, rw_se_dim=rw_se_dim, cache_dir=cache_dir)


@register("cluster", task="graph", kind="dataset", embedded=True)
def cluster(data_dir: str = "data", batch_size: int = 32, num_workers: int = 0, train_graphs: int = 10000,
            val_graphs: int = 1000, test_graphs: int = 1000, seed: int = 0, community_size: list[int] = (5, 35),
            lap_pe_dim: int = 0, rw_se_dim: int = 0, cache_dir: str | None = None) -> ClusterDataModule:
    return ClusterDataModule(community_size, train_graphs=train_graphs, val_graphs=val_graphs,
                             test_graphs=test_graphs, seed=seed, data_dir=data_dir, batch_size=batch_size,
                             num_workers=num_workers, lap_pe_dim=lap_pe_dim, rw_se_dim=rw_se_dim, cache_dir=cache_dir)


@register("long_range", task="graph", kind="dataset", embedded=True)
def long_range(data_dir: str = "data", batch_size: int = 32, num_workers: int = 0, train_graphs: int = 2000,
               val_graphs: int = 400, test_graphs: int = 400, seed: int = 0, min_distance: int = 8,
               min_nodes: int = 24, max_nodes: int = 40, lap_pe_dim: int = 0, rw_se_dim: int = 0,
               cache_dir: str | None = None) -> LongRangeDataModule:
    return LongRangeDataModule(min_distance, min_nodes, max_nodes, train_graphs=train_graphs, val_graphs=val_graphs,
                               test_graphs=test_graphs, seed=seed, data_dir=data_dir, batch_size=batch_size,
                               num_workers=num_workers, lap_pe_dim=lap_pe_dim, rw_se_dim=rw_se_dim,
                               cache_dir=cache_dir)
