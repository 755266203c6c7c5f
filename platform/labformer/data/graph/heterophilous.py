"""Heterophilous graphs (Platonov et al., ICLR 2023): `<data_dir>/heterophilous/<name>.npz`.

10 fixed splits (`split` picks one); edges stored once, symmetrised here; ROC-AUC for the
binary ones (minesweeper, tolokers, questions), accuracy otherwise.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from labformer.data.files import RemoteFile, locate
from labformer.data.graph.base import GraphDataModule, symmetric_edges
from labformer.errors import UserError
from labformer.registry import register

_HETERO_URL = "https://github.com/yandex-research/heterophilous-graphs/raw/main/data/"
# name: (node features, classes, sha256 of the npz or None when not recorded here)
HETEROPHILOUS = {
    "minesweeper": (7, 2, "e664c8dacf1e8ac466c2c09ed4b237bd2c5541f47a6eae9c6092cb87f16412b3"),
    "tolokers": (10, 2, "dacf3ac94cec53d03cd2adb5255c08b33dee1656c33ca8164a464bd9450a1667"),
    "questions": (301, 2, None),
    "roman_empire": (300, 18, None),
    "amazon_ratings": (300, 5, None),
    # chameleon and squirrel without their duplicate nodes (the paper's Sec. 3): accuracy, 5 classes
    "chameleon_filtered": (2325, 5, "bf46f07e1fb5249280447e5fe3100f3e82fc4b93ad1e13ffcfdec924b6ac0bb5"),
    "squirrel_filtered": (2089, 5, "f06370ffb3116c5de8b7a600005400b2293c025e0ce2f6916d8201a825505ac7"),
}


class HeterophilousDataModule(GraphDataModule):
    level, transductive, folder = "node", True, "heterophilous"

    def __init__(self, dataset: str, split: int = 0, **base: Any):
        """split: one of the 10 fixed splits (0..9); download works only where a sha256 is recorded
        (minesweeper)."""
        if dataset not in HETEROPHILOUS:
            raise UserError(f"unknown heterophilous dataset '{dataset}'; one of {', '.join(HETEROPHILOUS)}")
        if not 0 <= split < 10:
            raise UserError(f"data.split={split} must be one of the 10 fixed splits 0..9")
        self.name = dataset
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
        edge_index = symmetric_edges(torch.from_numpy(raw["edges"]).long().T, n)
        masks = {s: torch.from_numpy(raw[f"{key}_masks"][self.split_id]).bool()
                 for s, key in (("train", "train"), ("val", "val"), ("test", "test"))}
        return [Data(x=x, edge_index=edge_index, y=torch.from_numpy(raw["node_labels"]).long(), num_nodes=n)], masks


for _name in HETEROPHILOUS:  # one graph per name; batch_size 1: the whole graph every step
    register(_name, task="graph", kind="dataset", embedded=False, args=dict(batch_size=1),
             fixed=dict(dataset=_name))(HeterophilousDataModule)
