"""Graph datasets read from files in the data directory (downloaded with a sha256 when a
public URL and checksum are known; otherwise the error names the files and the URL).

- Cora, Planetoid public split (Yang et al. 2016): `<data_dir>/planetoid/ind.cora.*`,
  Python-2 pickles (checked against their sha256 before unpickling). Train = the first
  140 nodes, val = the next 500, test = the 1000 ids in `test.index`.
- Heterophilous graphs (Platonov et al., ICLR 2023): `<data_dir>/heterophilous/<name>.npz`
  with 10 fixed splits (`split` picks one); edges stored once, symmetrised here; ROC-AUC
  for the binary ones (minesweeper, tolokers, questions), accuracy otherwise.
- TU graph classification (Morris et al. 2020), text format: `<data_dir>/<name>/<NAME>_*.txt`;
  stratified 10-fold cross-validation (`fold` picks the test fold; a stratified tenth of
  the rest is validation).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from labformer.data.files import MissingDataError, RemoteFile, locate, verify_sha256
from labformer.data.graph import GraphDataModule
from labformer.errors import UserError
from labformer.registry import register

_PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data/"
_CORA_SHA = {
    "allx": "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
    "ally": "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
    "graph": "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
    "test.index": "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875",
    "tx": "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
    "ty": "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
    "x": "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
    "y": "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
}


def _symmetric(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    edge_index, _ = remove_self_loops(edge_index)
    return coalesce(to_undirected(edge_index, num_nodes=n), num_nodes=n)


class CoraDataModule(GraphDataModule):
    name, level, num_classes, metric, num_node_features, transductive = "cora", "node", 7, "accuracy", 1433, True
    folder = "planetoid"
    FILES = [RemoteFile(f"ind.cora.{k}", _PLANETOID_URL + f"ind.cora.{k}", sha) for k, sha in _CORA_SHA.items()]

    def __init__(self, normalize_features: bool = True, **base: Any):
        super().__init__(**base)
        self.normalize_features = normalize_features

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "normalize_features": self.normalize_features}

    def load(self) -> tuple[list[Data], dict[str, Any]]:
        folder = locate(self.folder, self.FILES, self.data_dir, download=self.download)
        parts = {}
        for f in self.FILES:
            verify_sha256(folder / f.name, f.sha256)  # known bytes: safe to unpickle
            if f.name.endswith("test.index"):
                continue
            with open(folder / f.name, "rb") as fh:
                parts[f.name.rsplit(".", 1)[1]] = pickle.load(fh, encoding="latin1")
        test_ids = np.loadtxt(folder / "ind.cora.test.index", dtype=np.int64)
        x = np.vstack([parts["allx"].toarray(), parts["tx"].toarray()]).astype(np.float32)
        y = np.vstack([parts["ally"], parts["ty"]]).argmax(1)
        # Row k of tx/ty belongs to node test_ids[k]; stacked after allx they sit at the sorted ids.
        x[test_ids], y[test_ids] = x[np.sort(test_ids)], y[np.sort(test_ids)]
        n = len(y)
        edges = [(u, v) for u, nbrs in parts["graph"].items() for v in nbrs]
        edge_index = _symmetric(torch.tensor(edges, dtype=torch.long).T, n)
        feats = torch.from_numpy(x)
        if self.normalize_features:
            feats = feats / feats.sum(1, keepdim=True).clamp(min=1)
        masks = {s: torch.zeros(n, dtype=torch.bool) for s in ("train", "val", "test")}
        masks["train"][:140], masks["val"][140:640], masks["test"][torch.from_numpy(test_ids)] = True, True, True
        return [Data(x=feats, edge_index=edge_index, y=torch.from_numpy(y).long(), num_nodes=n)], masks


_HETERO_URL = "https://github.com/yandex-research/heterophilous-graphs/raw/main/data/"
# name: (node features, classes, sha256 of the npz or None when not recorded here)
HETEROPHILOUS = {
    "minesweeper": (7, 2, "e664c8dacf1e8ac466c2c09ed4b237bd2c5541f47a6eae9c6092cb87f16412b3"),
    "tolokers": (10, 2, None),
    "questions": (301, 2, None),
    "roman-empire": (300, 18, None),
    "amazon-ratings": (300, 5, None),
}


class HeterophilousDataModule(GraphDataModule):
    level, transductive, folder = "node", True, "heterophilous"

    def __init__(self, dataset: str, split: int = 0, **base: Any):
        if dataset not in HETEROPHILOUS:
            raise UserError(f"unknown heterophilous dataset '{dataset}'; one of {', '.join(HETEROPHILOUS)}")
        if not 0 <= split < 10:
            raise UserError(f"data.split={split} must be one of the 10 fixed splits 0..9")
        self.name = dataset.replace("-", "_")
        self.dataset, self.split_id = dataset, split
        self.num_node_features, self.num_classes, self.sha256 = HETEROPHILOUS[dataset]
        self.metric = "auroc" if self.num_classes == 2 else "accuracy"
        super().__init__(**base)

    def settings(self) -> dict[str, Any]:
        return {"name": self.dataset}  # the split only masks: encodings are shared by all ten

    def load(self) -> tuple[list[Data], dict[str, Any]]:
        file = RemoteFile(f"{self.dataset}.npz", _HETERO_URL + f"{self.dataset}.npz", self.sha256 or "unrecorded")
        hint = "" if self.sha256 else (f"No checksum is recorded for {file.name}, so it is not downloaded: fetch it "
                                       f"from {file.url} yourself.")
        folder = locate(self.folder, [file], self.data_dir, download=self.download and bool(self.sha256), hint=hint)
        raw = np.load(folder / file.name)
        x = torch.from_numpy(raw["node_features"]).float()
        if x.shape[1] != self.num_node_features:
            raise UserError(f"{folder / file.name}: {x.shape[1]} node features, expected {self.num_node_features}")
        n = x.shape[0]
        edge_index = _symmetric(torch.from_numpy(raw["edges"]).long().T, n)
        masks = {s: torch.from_numpy(raw[f"{key}_masks"][self.split_id]).bool()
                 for s, key in (("train", "train"), ("val", "val"), ("test", "test"))}
        return [Data(x=x, edge_index=edge_index, y=torch.from_numpy(raw["node_labels"]).long(), num_nodes=n)], masks


# name: (folder/prefix, node label types, edge label types, classes)
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


# -- registered builders: their signatures are the config schema (conf/data/<name>.yaml) --
def _base(data_dir: str, batch_size: int, num_workers: int, lap_pe_dim: int, rw_se_dim: int, cache_dir: str | None,
          download: bool) -> dict[str, Any]:
    return dict(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, lap_pe_dim=lap_pe_dim,
                rw_se_dim=rw_se_dim, cache_dir=cache_dir, download=download)


@register("cora", task="graph", kind="dataset", embedded=False)
def cora(data_dir: str = "data", batch_size: int = 1, num_workers: int = 0, normalize_features: bool = True,
         lap_pe_dim: int = 0, rw_se_dim: int = 0, cache_dir: str | None = None, download: bool = True) -> CoraDataModule:
    return CoraDataModule(normalize_features, **_base(data_dir, batch_size, num_workers, lap_pe_dim, rw_se_dim,
                                                      cache_dir, download))


def _heterophilous(dataset: str):
    def build(data_dir: str = "data", batch_size: int = 1, num_workers: int = 0, split: int = 0, lap_pe_dim: int = 0,
              rw_se_dim: int = 0, cache_dir: str | None = None, download: bool = True) -> HeterophilousDataModule:
        return HeterophilousDataModule(dataset, split, **_base(data_dir, batch_size, num_workers, lap_pe_dim,
                                                               rw_se_dim, cache_dir, download))
    build.__name__ = dataset.replace("-", "_")
    return build


for _name in HETEROPHILOUS:
    register(_name.replace("-", "_"), task="graph", kind="dataset", embedded=False)(_heterophilous(_name))


def _tu(dataset: str):
    def build(data_dir: str = "data", batch_size: int = 32, num_workers: int = 0, fold: int = 0, split_seed: int = 0,
              lap_pe_dim: int = 0, rw_se_dim: int = 0, cache_dir: str | None = None,
              download: bool = False) -> TUDataModule:
        return TUDataModule(dataset, fold, split_seed, **_base(data_dir, batch_size, num_workers, lap_pe_dim,
                                                               rw_se_dim, cache_dir, download))
    build.__name__ = dataset
    return build


for _name in TU:
    register(_name, task="graph", kind="dataset", embedded=False)(_tu(_name))

__all__ = ["CoraDataModule", "HeterophilousDataModule", "TUDataModule", "MissingDataError"]
