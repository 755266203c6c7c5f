"""The graph DataModule contract: PyG `Data` graphs in, PyG `Batch` out.

Contract (the graph task and the backbone builders rely on it): right after `__init__`,
before any graph is read or generated, a DataModule knows `name`, `level` ("node":
a label per node; "graph": one per graph), `num_classes` (the outputs: classes, or labels when
multilabel, or targets when regression), `metric` ("accuracy", "balanced_accuracy", "auroc",
"average_precision" or "mae"; tasks/graph_metrics.py), `num_node_features`, `num_edge_features` (0: none) and
the encoding sizes `lap_pe_dim` / `rw_se_dim` / `mag_pe_dim` (TU datasets, registered with
`sizes_from_files`, read their small label files for the feature and class counts the first
time those are asked for; the graphs wait for `setup` like everywhere else). Every graph carries float `x` [N, F]
(or uint8 one-hot blocks: encoders read `x.float()`), `edge_index` (both directions), optional float (or uint8
one-hot) `edge_attr` [E, edge_dim], `y` (long classes; per graph, multilabel long [1, L] or regression float
[1, T]), and
the requested encodings `lap_pe` / `rw_se` / `mag_pe`. A directed dataset also keeps its
edges as given, one way, in `directed_edge_index` (read by the magnetic PE; message passing
and LapPE see only the symmetric `edge_index`).

Inductive datasets (many graphs) split the graphs; transductive ones (one graph: Cora,
the heterophilous graphs) yield that graph for every split with a boolean `mask` saying
which nodes the split scores.

Preprocessing (encodings, and the backbone's own `data_transform()`, e.g. Exphormer's
expander, which the builders hand over with `use_backbone`) runs once over the
dataset and is cached under `cache_dir` (default `<data_dir>/<name>/cache`), keyed by the dataset's
settings and the transform's.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from labformer.data.graph.cache import CachedTransform, apply_cached, settings_hash
from labformer.data.graph.encodings import LaplacianPE, RandomWalkSE
from labformer.data.graph.magnetic import MagneticLaplacianPE, check_q
from labformer.errors import UserError

log = logging.getLogger("labformer")
SPLITS = ("train", "val", "test")


def symmetric_edges(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """Both directions of every edge, once each, no self-loops (files that store an edge once)."""
    edge_index, _ = remove_self_loops(edge_index)
    return coalesce(to_undirected(edge_index, num_nodes=n), num_nodes=n)


class OneBatch:
    """A loader of one prepared batch (Lightning takes a plain list for several loaders, not one).

    Each pass draws the one number a DataLoader draws from torch's generator when it starts (its
    workers' base seed), so the run's random stream, and with it every number recorded with a
    DataLoader here before, stays the same."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def __iter__(self):
        torch.empty((), dtype=torch.int64).random_()
        yield self.batch

    def __len__(self) -> int:
        return 1


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
                 lap_pe_dim: int = 0, rw_se_dim: int = 0, cache_dir: str | None = None, download: bool = True,
                 mag_pe_dim: int = 0, mag_pe_q: float = 0.25):
        """lap_pe_dim: Laplacian eigenvectors per node (0: none); rw_se_dim: random-walk return probabilities,
        1..rw_se_dim steps (0: none); mag_pe_dim: eigenvectors of the magnetic Laplacian with potential
        mag_pe_q (Geisler et al. 2023; data/graph/magnetic.py), 2 * mag_pe_dim real features per node
        (0: none); all are cached per setting; cache_dir: None for <data_dir>/<name>/cache;
        download: fetch missing files (sha256-checked) where a checksum is recorded, otherwise the error
        names the URL."""
        super().__init__()
        for key, value, ok in (("batch_size", batch_size, batch_size >= 1),
                               ("num_workers", num_workers, num_workers >= 0),
                               ("lap_pe_dim", lap_pe_dim, lap_pe_dim >= 0), ("rw_se_dim", rw_se_dim, rw_se_dim >= 0),
                               ("mag_pe_dim", mag_pe_dim, mag_pe_dim >= 0)):
            if not ok:
                raise UserError(f"data.{key}={value!r} is out of range for dataset '{self.name}'. "
                                "Fix: batch_size>=1, num_workers>=0, lap_pe_dim>=0, rw_se_dim>=0, mag_pe_dim>=0.")
        check_q(mag_pe_q)
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size, self.num_workers, self.download = batch_size, num_workers, download
        self.lap_pe_dim, self.rw_se_dim, self.mag_pe_dim, self.mag_pe_q = lap_pe_dim, rw_se_dim, mag_pe_dim, mag_pe_q
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.data_dir / self.name / "cache"
        self.model_transform: CachedTransform | None = None
        self.backbone_max_nodes: int | None = None  # the backbone's limit (dense attention), set by use_backbone
        self.graphs: list[Data] | None = None
        self.split_index: dict[str, Any] = {}  # inductive: graph ids; transductive: node masks
        self._applied: set[str] = set()
        self._collated: dict[str, Batch] = {}  # transductive: split -> its one batch

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
    def use_backbone(self, backbone: Any) -> None:
        """Take what a graph backbone (models/graph/base.py) asks of its data: its preprocessing
        (applied and cached at the next `setup`) and the largest graph it accepts."""
        self.model_transform, self.backbone_max_nodes = backbone.data_transform, backbone.max_nodes

    def transforms(self) -> list[CachedTransform]:
        out: list[CachedTransform] = []
        if self.lap_pe_dim:
            out.append(LaplacianPE(self.lap_pe_dim))
        if self.rw_se_dim:
            out.append(RandomWalkSE(self.rw_se_dim))
        if self.mag_pe_dim:
            out.append(MagneticLaplacianPE(self.mag_pe_dim, self.mag_pe_q))
        if self.model_transform is not None:
            out.append(self.model_transform)
        return out

    def prepare_data(self) -> None:
        pass  # readers download in `load` (locate); nothing to do across processes

    def setup(self, stage: str | None = None) -> None:
        if self.graphs is None:
            self.graphs, self.split_index = self.load()
        if self.backbone_max_nodes is not None:
            largest = max(g.num_nodes for g in self.graphs)
            if largest > self.backbone_max_nodes:
                raise UserError(f"dataset '{self.name}' has a graph of {largest} nodes; the model takes at most "
                                f"{self.backbone_max_nodes} (dense attention). Use a sparse graph model "
                                "(exphormer, gps, polynormer, gcn) or a dataset of smaller graphs")
        for t in self.transforms():
            tag = f"{t.name}:{settings_hash(t.cache_key)}"
            if tag not in self._applied:
                apply_cached(self.graphs, t, self.dataset_key, self.cache_dir)
                self._applied.add(tag)
                self._collated.clear()

    def split(self, split: str) -> list[Data]:
        self.setup()
        if self.transductive:
            view = copy.copy(self.graphs[0])  # shares the tensors
            view.mask = self.split_index[split]
            return [view]
        return [self.graphs[i] for i in self.split_index[split]]

    # -- loaders -------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader | OneBatch:
        if self.transductive:  # one graph, the same batch every epoch: collated once, not once per epoch
            if split not in self._collated:
                self._collated[split] = Batch.from_data_list(self.split(split))
            return OneBatch(self._collated[split])
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

