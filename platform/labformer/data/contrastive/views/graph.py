"""Graph views (GraphCL / GRACE style): edge dropping and node-feature column masking.

Items are the graphs of a graph-level DataModule's split, taken after its preprocessing,
so encodings it computes (`lap_pe`, `rw_se`, a backbone's transform) are on them. A batch
is one PyG `Batch`; each view is a shallow copy of it with, independently per view:
- edge drop: every undirected edge (both of its directions together) is removed with
  probability `edge_drop`; every edge-level attribute (`edge_attr`, ...) loses the same rows
- feature mask: in each graph, round(feature_mask * F) of the F node-feature columns, chosen
  at random, are set to zero for all of that graph's nodes

Node-level datasets (one label per node, e.g. Cora) have no per-graph label or, when they
are one graph, no set of items to contrast: they are refused.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data

from labformer import registry
from labformer.data.contrastive.views.base import ViewDataset, reject_unknown, share
from labformer.errors import UserError
from labformer.registry import register


def drop_edges(edge_index: torch.Tensor, p: float, num_nodes: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep mask [E] that drops each undirected edge with probability p, (u, v) and (v, u) alike."""
    if p <= 0 or edge_index.shape[1] == 0:
        return torch.ones(edge_index.shape[1], dtype=torch.bool)
    u, v = edge_index
    pair = torch.minimum(u, v) * num_nodes + torch.maximum(u, v)
    _, which = torch.unique(pair, return_inverse=True)
    keep_pair = torch.rand(int(which.max()) + 1, generator=generator) >= p
    return keep_pair[which]


def mask_columns(x: torch.Tensor, graph_of_node: torch.Tensor, num_graphs: int, p: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """x with round(p * F) random feature columns zeroed per graph (the same columns for all its nodes)."""
    k = round(p * x.shape[1])
    if k == 0:
        return x
    order = torch.rand(num_graphs, x.shape[1], generator=generator).argsort(1)
    keep = torch.ones(num_graphs, x.shape[1], dtype=x.dtype).scatter_(1, order[:, :k], 0)
    return x * keep[graph_of_node]


class GraphViews:
    def __init__(self, edge_drop: float = 0.2, feature_mask: float = 0.2) -> None:
        self.edge_drop, self.feature_mask = share("edge_drop", edge_drop), share("feature_mask", feature_mask)

    def __call__(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        out = copy.copy(batch)  # new storage, shared tensors: the clean batch stays as it is
        keep = drop_edges(batch.edge_index, self.edge_drop, batch.num_nodes, generator)
        if not bool(keep.all()):
            kept = keep.nonzero().view(-1)
            edges = batch.edge_index.shape[1]  # a backbone's extra edge sets (other sizes) stay whole
            edge_keys = [k for k in batch.keys() if batch.is_edge_attr(k)
                         and batch[k].shape[batch.__cat_dim__(k, batch[k])] == edges]
            for key in edge_keys:
                value = batch[key]
                out[key] = value.index_select(batch.__cat_dim__(key, value), kept)
            # Per-graph edge slices, so that `to_data_list` and indexing still split the batch right.
            counts = torch.bincount(batch.batch[batch.edge_index[0, kept]], minlength=batch.num_graphs)
            bounds = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
            out._slice_dict = {**batch._slice_dict, **{k: bounds for k in edge_keys}}
        if self.feature_mask > 0:
            out.x = mask_columns(batch.x, batch.batch, batch.num_graphs, self.feature_mask, generator)
        return out


@register("graph", task="contrastive", kind="views")
class GraphViewAdapter:
    """Views of a graph-level DataModule's graphs (GraphDataModule.split after its preprocessing)."""

    labelled = True  # one class per graph

    def __init__(self, base, edge_drop: float = 0.2, feature_mask: float = 0.2, **unknown: Any) -> None:
        reject_unknown("graph", unknown, ("edge_drop", "feature_mask"), "edge_drop=0.3")
        if getattr(base, "level", None) != "graph" or getattr(base, "transductive", False):
            usable = [e.name for e in registry.entries(kind="dataset", task="graph") if _graph_level(e)]
            raise UserError(f"data={base.name}: contrastive learning needs graph-level datasets (many graphs, one "
                            f"label each); '{base.name}' is {getattr(base, 'level', '?')}-level. Use one of: "
                            f"{', '.join(usable)}")
        self.base = base
        self.views = GraphViews(edge_drop, feature_mask)

    def split(self, name: str) -> tuple[list[Data], torch.Tensor]:
        graphs = self.base.split(name)  # sets the base up (reads, encodes) on first use
        labels = torch.cat([g.y.view(-1)[:1] for g in graphs]) if graphs else torch.zeros(0, dtype=torch.long)
        return graphs, labels.long()

    def dataset(self, split: str, clean: bool, seed: int | None, augment: bool = True) -> Dataset:
        graphs, labels = self.split(split)
        return ViewDataset(lambda idx: Batch.from_data_list([graphs[int(i)] for i in idx]), labels, self.views,
                           clean=clean, seed=seed, augment=augment)

    @staticmethod
    def collate(batch: dict[str, Any]) -> dict[str, Any]:
        return batch  # assembled by the dataset


def _graph_level(entry) -> bool:
    """Whether a registered graph dataset is graph-level: its DataModule knows before reading any file."""
    try:
        dm = entry.build()
    except Exception:  # needs settings of its own (a path): not listed
        return False
    return getattr(dm, "level", None) == "graph" and not getattr(dm, "transductive", False)
