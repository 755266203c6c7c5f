"""Planetoid citation graphs with the public split (Yang et al. 2016): Cora, CiteSeer, PubMed.

Files `<data_dir>/planetoid/ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}`: Python-2
pickles (x/tx/allx scipy CSR features, y/ty/ally one-hot labels, graph a dict of neighbour
lists). Train = the first len(y) nodes (Cora 140, CiteSeer 120, PubMed 60), val = the next
500, test = the 1000 ids in `test.index`. Row k of tx/ty is node test.index[k]; CiteSeer's
test ids leave gaps (isolated nodes without features in the files): those nodes get zero
features and are in no split, as in PyG's reader. Cora's and CiteSeer's files are checked against their
sha256 before unpickling (and downloaded when absent); PubMed's checksums are not recorded
here, so they are read from the data directory only: unpickling files you put there is your
trust decision, as with any pickle.
"""
from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from labformer.data.files import RemoteFile, locate, verify_sha256
from labformer.data.graph.base import GraphDataModule, symmetric_edges
from labformer.errors import UserError
from labformer.registry import register

_PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data/"
PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")
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
_CITESEER_SHA = {
    "allx": "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668",
    "ally": "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95",
    "graph": "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7",
    "test.index": "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4",
    "tx": "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21",
    "ty": "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce",
    "x": "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6",
    "y": "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924",
}
# name: (node features, classes, sha256 per part or None when not recorded here)
PLANETOID = {"cora": (1433, 7, _CORA_SHA), "citeseer": (3703, 6, _CITESEER_SHA), "pubmed": (500, 3, None)}


def read_planetoid(folder, name: str, checksums: dict[str, str] | None) -> tuple[np.ndarray, np.ndarray, dict, int,
                                                                                  np.ndarray]:
    """(features [N,F], labels [N], neighbour lists, training nodes, test ids) of `ind.<name>.*` in `folder`."""
    parts: dict[str, Any] = {}
    for part in PARTS:
        path = folder / f"ind.{name}.{part}"
        if checksums:
            verify_sha256(path, checksums[part])  # known bytes: safe to unpickle
        if part == "test.index":
            parts[part] = np.loadtxt(path, dtype=np.int64, ndmin=1)
            continue
        with open(path, "rb") as fh:
            try:
                parts[part] = pickle.load(fh, encoding="latin1")
            except Exception as e:
                raise UserError(f"{path} is not a Planetoid pickle ({type(e).__name__}: {e}); fetch it again from "
                                f"{_PLANETOID_URL}ind.{name}.{part}") from None
    allx, test_ids = parts["allx"].toarray(), parts["test.index"]
    n = max(len(allx), int(test_ids.max()) + 1)
    x = np.zeros((n, allx.shape[1]), dtype=np.float32)
    y = np.zeros((n, parts["ally"].shape[1]), dtype=np.float32)
    x[:len(allx)], y[:len(allx)] = allx, parts["ally"]
    x[test_ids], y[test_ids] = parts["tx"].toarray(), parts["ty"]  # row k is node test_ids[k]
    return x, y.argmax(1), parts["graph"], len(parts["y"]), test_ids


# batch_size 1: one graph, so every step sees all nodes; the split's mask picks the scored ones.
class PlanetoidDataModule(GraphDataModule):
    level, metric, transductive, folder = "node", "accuracy", True, "planetoid"

    def __init__(self, dataset: str, normalize_features: bool = True, **base: Any):
        """normalize_features: the rows of the features sum to 1 (as in GCN's recipe)."""
        self.name = dataset
        self.num_node_features, self.num_classes, self.checksums = PLANETOID[dataset]
        super().__init__(**base)
        self.normalize_features = normalize_features

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "normalize_features": self.normalize_features}

    def load(self) -> tuple[list[Data], dict[str, Any]]:
        sha = self.checksums or {}
        files = [RemoteFile(f"ind.{self.name}.{p}", _PLANETOID_URL + f"ind.{self.name}.{p}", sha.get(p, "unrecorded"))
                 for p in PARTS]
        hint = "" if self.checksums else (f"No checksums are recorded for {self.name}, so it is not downloaded: "
                                          f"fetch the files from {_PLANETOID_URL} yourself.")
        folder = locate(self.folder, files, self.data_dir, download=self.download and bool(self.checksums), hint=hint)
        x, y, graph, n_train, test_ids = read_planetoid(folder, self.name, self.checksums)
        n = len(y)
        edges = [(u, v) for u, nbrs in graph.items() for v in nbrs if u < n and v < n]
        edge_index = symmetric_edges(torch.tensor(edges, dtype=torch.long).T, n)
        feats = torch.from_numpy(x)
        if self.normalize_features:
            feats = feats / feats.sum(1, keepdim=True).clamp(min=1)
        masks = {s: torch.zeros(n, dtype=torch.bool) for s in ("train", "val", "test")}
        masks["train"][:n_train], masks["val"][n_train:n_train + 500] = True, True
        masks["test"][torch.from_numpy(test_ids)] = True
        return [Data(x=feats, edge_index=edge_index, y=torch.from_numpy(y).long(), num_nodes=n)], masks


for _name in PLANETOID:
    register(_name, task="graph", kind="dataset", embedded=False, args=dict(batch_size=1),
             fixed=dict(dataset=_name))(PlanetoidDataModule)
