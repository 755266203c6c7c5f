"""TU graph classification (Morris et al. 2020), text format: `<data_dir>/<name>/<NAME>_*.txt`.

Stratified 10-fold cross-validation: `fold` picks the test fold, a stratified ninth of the
rest is validation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from labformer.data.files import RemoteFile, locate
from labformer.data.graph.base import GraphDataModule
from labformer.errors import UserError
from labformer.registry import register

TU = {"mutag": ("MUTAG", 7, 4, 2), "nci1": ("NCI1", 37, 0, 2), "proteins": ("PROTEINS", 3, 0, 2)}
_TU_SHA = {
    "MUTAG_A.txt": "d9656ca7493f3445d737c711710bb36fd432dddd1c0ea32e1d4713c86ebd28e2",
    "MUTAG_edge_labels.txt": "4669ce755075ff86c3240709345745886400908fa637a49310459b9c267b3e56",
    "MUTAG_graph_indicator.txt": "7d520a4d6c7961c0cdeabe076d8fe27e795b6d373485c9a2b744987e560a2056",
    "MUTAG_graph_labels.txt": "a1518ea39ba3426bd42f57396b9c4baffe68e9adc718caeeab0119c6591a5f2c",
    "MUTAG_node_labels.txt": "678f429965490e84dd27713017538c995fc05d1621beac910848b600015ee863",
}
_TU_URL = "https://www.chrsmrrs.com/graphkerneldatasets/"


def _ints(path: Path) -> np.ndarray:
    return np.loadtxt(path, dtype=np.int64, delimiter=",", ndmin=1)


class TUDataModule(GraphDataModule):
    level, metric = "graph", "accuracy"

    def __init__(self, dataset: str, fold: int = 0, split_seed: int = 0, **base: Any):
        """fold: test fold of the stratified 10-fold cross-validation (0..9); split_seed: seed of the folds and
        of the validation split; download is ignored: TU ships zips without recorded checksums, so unzip the
        .txt files yourself."""
        if dataset not in TU:
            raise UserError(f"unknown TU dataset '{dataset}'; one of {', '.join(TU)}")
        if not 0 <= fold < 10:
            raise UserError(f"data.fold={fold} must be one of the 10 folds 0..9")
        self.name = dataset
        self.prefix, self.num_node_features, self.num_edge_features, self.num_classes = TU[dataset]
        self.fold, self.split_seed = fold, split_seed
        super().__init__(**base)

    def settings(self) -> dict[str, Any]:
        return {"name": self.name}  # folds only choose graphs: encodings are shared

    def load(self) -> tuple[list[Data], dict[str, Any]]:
        kinds = ["A", "graph_indicator", "graph_labels", "node_labels"] + (["edge_labels"] if self.num_edge_features else [])
        files = [RemoteFile(f"{self.prefix}_{k}.txt", _TU_URL + f"{self.prefix}.zip",
                            _TU_SHA.get(f"{self.prefix}_{k}.txt", "unrecorded")) for k in kinds]
        folder = locate(self.name, files, self.data_dir, download=False,
                        hint=f"TU datasets come as one zip ({_TU_URL}{self.prefix}.zip): unzip its .txt files there.")
        edges = np.loadtxt(folder / files[0].name, dtype=np.int64, delimiter=",", ndmin=2) - 1  # 1-based ids
        graph_of = _ints(folder / files[1].name) - 1
        labels = _ints(folder / files[2].name)
        node_labels = _ints(folder / files[3].name)
        edge_labels = _ints(folder / files[4].name) if self.num_edge_features else None
        classes = np.unique(labels)
        if len(classes) != self.num_classes or node_labels.max() >= self.num_node_features or (
                edge_labels is not None and edge_labels.max() >= self.num_edge_features):
            raise UserError(f"{folder}: the files do not look like {self.prefix} (classes {classes.tolist()}, "
                            f"node label types {node_labels.max() + 1}); fetch them again.")
        y = np.searchsorted(classes, labels)  # e.g. MUTAG's -1/1 -> 0/1
        starts = np.searchsorted(graph_of, np.arange(len(labels)))
        ends = np.append(starts[1:], len(graph_of))
        edge_graph = graph_of[edges[:, 0]]
        graphs = []
        x_all = torch.nn.functional.one_hot(torch.from_numpy(node_labels), self.num_node_features).float()
        e_all = (torch.nn.functional.one_hot(torch.from_numpy(edge_labels), self.num_edge_features).float()
                 if edge_labels is not None else None)
        order = np.argsort(edge_graph, kind="stable")
        bounds = np.searchsorted(edge_graph[order], np.arange(len(labels) + 1))
        for g in range(len(labels)):
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
        train, val = train_test_split(rest, test_size=1 / 9, stratify=y[rest], random_state=self.split_seed)
        return {"train": sorted(train.tolist()), "val": sorted(val.tolist()), "test": sorted(test.tolist())}


for _name in TU:
    register(_name, task="graph", kind="dataset", embedded=False, fixed=dict(dataset=_name))(TUDataModule)
