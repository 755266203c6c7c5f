"""TU graph classification (Morris et al. 2020), text format: `<data_dir>/<folder>/<PREFIX>_*.txt`.

Any TU dataset: the registered ones by name (`data=proteins`), any other by its prefix
(`data=tu data.dataset=COLLAB`, files in `<data_dir>/COLLAB/`). Node features: one-hot node
labels, with `node_attributes=true` also the continuous attributes; a dataset with neither
(the social ones, IMDB-BINARY) gets the one-hot node degree, capped at `degree_cap`, as in
Errica et al. (2020). Edge labels become one-hot edge features.

Protocol of Errica et al. (ICLR 2020): stratified 10-fold cross-validation (`fold` picks the
test fold), a stratified holdout of 10% of each training fold for validation, and model
selection on validation only (the best epoch here; a grid is a reproduction table). The folds
come from `split_seed`, not from Errica et al.'s published split files.

The numbers of node features and classes live only in the label files: a TU DataModule reads
those (not the graphs) the first time they are asked for, i.e. when the backbone is built.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.data import Data

from labformer.data.files import RemoteFile, locate
from labformer.data.graph.base import GraphDataModule
from labformer.errors import UserError
from labformer.registry import register

# registry name -> the files' prefix; they live in <data_dir>/<registry name>/
TU = {"mutag": "MUTAG", "nci1": "NCI1", "proteins": "PROTEINS", "enzymes": "ENZYMES", "dd": "DD",
      "imdb_binary": "IMDB-BINARY"}
_TU_URL = "https://www.chrsmrrs.com/graphkerneldatasets/"
REQUIRED = ("A", "graph_indicator", "graph_labels")
OPTIONAL = ("node_labels", "node_attributes", "edge_labels")


def _ints(path: Path) -> np.ndarray:
    return np.loadtxt(path, dtype=np.int64, delimiter=",", ndmin=1)


class TUDataModule(GraphDataModule):
    level, metric = "graph", "accuracy"

    def __init__(self, dataset: str | None = None, fold: int = 0, split_seed: int = 0, val_fraction: float = 0.1,
                 node_attributes: bool = False, degree_cap: int = 64, **base: Any):
        """dataset: the files' prefix (data=tu only); fold: test fold of the stratified 10-fold
        cross-validation (0..9); split_seed: seed of the folds and of the validation holdout;
        val_fraction: share of each training fold held out (stratified) for validation;
        node_attributes: append the continuous node attributes to the one-hot labels; degree_cap:
        one-hot degree features (for datasets without node labels or attributes) stop at this degree.
        download is ignored: TU ships zips without recorded checksums, so unzip the .txt files yourself."""
        if not dataset:
            named = ", ".join(f"data={n}" for n in TU)
            raise UserError("data=tu needs the dataset's file prefix: data.dataset=<NAME> for <NAME>_A.txt, ... "
                            f"in <data_dir>/<NAME>/ (or one of the named ones: {named})")
        if not 0 <= fold < 10 or not 0 < val_fraction < 1:
            raise UserError(f"data.fold={fold} must be one of the 10 folds 0..9 and data.val_fraction={val_fraction} "
                            "in (0, 1)")
        self.name, self.val_fraction = dataset, val_fraction
        self.prefix = TU.get(dataset, dataset)
        self.fold, self.split_seed, self.use_attributes, self.degree_cap = fold, split_seed, node_attributes, degree_cap
        super().__init__(**base)
        self._sizes: dict[str, Any] | None = None

    @cached_property
    def folder(self) -> Path:
        return locate(self.name, [self._file(k) for k in REQUIRED], self.data_dir, download=False,
                      hint=f"TU datasets come as one zip ({_TU_URL}{self.prefix}.zip): unzip its .txt files "
                           f"into {self.data_dir / self.name}/.")

    @property
    def sizes(self) -> dict[str, Any]:
        if self._sizes is None:
            self._sizes = self._scan()
        return self._sizes

    num_node_features = property(lambda self: self.sizes["node_features"])
    num_edge_features = property(lambda self: self.sizes["edge_features"])
    num_classes = property(lambda self: len(self.sizes["classes"]))

    def _file(self, kind: str) -> RemoteFile:
        return RemoteFile(f"{self.prefix}_{kind}.txt", _TU_URL + f"{self.prefix}.zip", "unrecorded")

    def _path(self, kind: str) -> Path | None:
        path = self.folder / f"{self.prefix}_{kind}.txt"  # (finding the folder raises when files are missing)
        return path if path.is_file() else None

    def _scan(self) -> dict[str, Any]:
        """Sizes from the label files: classes, node label types, attribute columns, edge label types."""
        labels, attributes, edge_labels = (self._path(k) for k in OPTIONAL)
        if self.use_attributes and attributes is None:
            raise UserError(f"data.node_attributes=true but {self.folder} has no {self.prefix}_node_attributes.txt")
        sizes = {"classes": np.unique(_ints(self._path("graph_labels"))),
                 "label_types": int(_ints(labels).max()) + 1 if labels else 0,
                 "attribute_dims": len(attributes.open().readline().split(",")) if self.use_attributes else 0,
                 "edge_features": int(_ints(edge_labels).max()) + 1 if edge_labels else 0}
        sizes["by_degree"] = not (sizes["label_types"] or sizes["attribute_dims"])
        sizes["node_features"] = (self.degree_cap + 1 if sizes["by_degree"]
                                  else sizes["label_types"] + sizes["attribute_dims"])
        return sizes

    def settings(self) -> dict[str, Any]:
        # folds only choose graphs: the features (and the encodings cached from them) are shared
        return {"name": self.name, "attributes": self.use_attributes, "degree_cap": self.degree_cap}

    def node_features(self, edges: np.ndarray, num_nodes: int) -> torch.Tensor:
        parts, sizes = [], self.sizes
        if sizes["label_types"]:
            parts.append(F.one_hot(torch.from_numpy(_ints(self._path("node_labels"))), sizes["label_types"]).float())
        if sizes["attribute_dims"]:
            values = np.loadtxt(self._path("node_attributes"), delimiter=",", ndmin=2, dtype=np.float32)
            parts.append(torch.from_numpy(values))
        if sizes["by_degree"]:
            degree = np.bincount(edges[:, 0], minlength=num_nodes).clip(max=self.degree_cap)
            parts.append(F.one_hot(torch.from_numpy(degree), self.degree_cap + 1).float())
        return torch.cat(parts, dim=1)

    def load(self) -> tuple[list[Data], dict[str, Any]]:
        edges = np.loadtxt(self._path("A"), dtype=np.int64, delimiter=",", ndmin=2) - 1  # 1-based, both directions
        graph_of = _ints(self._path("graph_indicator")) - 1
        y = np.searchsorted(self.sizes["classes"], _ints(self._path("graph_labels")))  # e.g. MUTAG's -1/1 -> 0/1
        x_all = self.node_features(edges, len(graph_of))
        edge_labels = self._path("edge_labels")
        e_all = F.one_hot(torch.from_numpy(_ints(edge_labels)), self.num_edge_features).float() if edge_labels else None
        if len(x_all) != len(graph_of) or edges.max() >= len(graph_of):
            raise UserError(f"{self.folder}: the node files and the graph indicator disagree; fetch the files again")
        starts = np.searchsorted(graph_of, np.arange(len(y)))
        ends = np.append(starts[1:], len(graph_of))
        edge_graph = graph_of[edges[:, 0]]
        order = np.argsort(edge_graph, kind="stable")
        bounds = np.searchsorted(edge_graph[order], np.arange(len(y) + 1))
        graphs = []
        for g in range(len(y)):
            idx = order[bounds[g]:bounds[g + 1]]
            data = Data(x=x_all[starts[g]:ends[g]], edge_index=torch.from_numpy(edges[idx].T - starts[g]).contiguous(),
                        y=torch.tensor([int(y[g])]), num_nodes=int(ends[g] - starts[g]))
            if e_all is not None:
                data.edge_attr = e_all[torch.from_numpy(idx)]
            graphs.append(data)
        return graphs, self._folds(y)

    def _folds(self, y: np.ndarray) -> dict[str, Any]:
        from sklearn.model_selection import StratifiedKFold, train_test_split

        folds = list(StratifiedKFold(10, shuffle=True, random_state=self.split_seed).split(np.zeros(len(y)), y))
        rest, test = folds[self.fold]
        train, val = train_test_split(rest, test_size=self.val_fraction, stratify=y[rest],
                                      random_state=self.split_seed)
        return {"train": sorted(train.tolist()), "val": sorted(val.tolist()), "test": sorted(test.tolist())}


# sizes_from_files: the numbers of features and classes are read from the label files when first asked for.
for _name in TU:
    register(_name, task="graph", kind="dataset", embedded=False, sizes_from_files=True,
             fixed=dict(dataset=_name))(TUDataModule)
# any other TU dataset: data=tu data.dataset=<PREFIX>
register("tu", task="graph", kind="dataset", embedded=False, sizes_from_files=True)(TUDataModule)
