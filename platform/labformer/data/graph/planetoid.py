"""Cora with the Planetoid public split (Yang et al. 2016): `<data_dir>/planetoid/ind.cora.*`.

Python-2 pickles, checked against their sha256 before unpickling. Train = the first 140
nodes, val = the next 500, test = the 1000 ids in `test.index`.
"""
from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from labformer.data.files import RemoteFile, locate, verify_sha256
from labformer.data.graph.base import GraphDataModule, symmetric_edges
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


# batch_size 1: one graph, so every step sees all nodes; the split's mask picks the scored ones.
@register("cora", task="graph", kind="dataset", embedded=False, args=dict(batch_size=1))
class CoraDataModule(GraphDataModule):
    name, level, num_classes, metric, num_node_features, transductive = "cora", "node", 7, "accuracy", 1433, True
    folder = "planetoid"
    FILES = [RemoteFile(f"ind.cora.{k}", _PLANETOID_URL + f"ind.cora.{k}", sha) for k, sha in _CORA_SHA.items()]

    def __init__(self, normalize_features: bool = True, **base: Any):
        """normalize_features: rows of the bag-of-words sum to 1 (as in GCN's recipe)."""
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
        edge_index = symmetric_edges(torch.tensor(edges, dtype=torch.long).T, n)
        feats = torch.from_numpy(x)
        if self.normalize_features:
            feats = feats / feats.sum(1, keepdim=True).clamp(min=1)
        masks = {s: torch.zeros(n, dtype=torch.bool) for s in ("train", "val", "test")}
        masks["train"][:140], masks["val"][140:640], masks["test"][torch.from_numpy(test_ids)] = True, True, True
        return [Data(x=feats, edge_index=edge_index, y=torch.from_numpy(y).long(), num_nodes=n)], masks

