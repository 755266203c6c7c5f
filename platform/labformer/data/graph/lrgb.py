"""Peptides-func and Peptides-struct of the Long Range Graph Benchmark (Dwivedi et al., NeurIPS 2022
Datasets & Benchmarks): 15,535 peptides (about 151 atoms each), one fixed split of 10,873 / 2,331 /
2,331 graphs.
  - peptides_func: 10 functional classes, multilabel graph classification, scored by the average
    precision (macro over the labels, `metric: average_precision`);
  - peptides_struct: 11 structural properties (normalised), graph regression scored by the MAE.

Read through PyG's `torch_geometric.datasets.LRGBDataset` (pyg_datasets.py) with root
`<data_dir>/lrgb/`: its `process()` reads `peptides-func/raw/{train,val,test}.pt` (or
`peptides-struct/...`), each a list of tuples (x [N, 9] long, edge_attr [E, 3] long, edge_index
[2, E], y [1, 10 or 11]), and writes `<name>/processed/`. The files come as one archive per
dataset (peptidesfunc.zip / peptidesstruct.zip, whose folder becomes `raw/`).

Features: the OGB featurisation of atoms (9 integer columns) and bonds (3 columns), each column
one-hot in its own block (x [N, 174], edge_attr [E, 13]); the linear input layer of every encoder
on these blocks is OGB's AtomEncoder / BondEncoder (one embedding table per column, summed). They
are stored as uint8 (every encoder reads `x.float()`): as float32 the 2.3M atoms' one-hot rows
would take 1.6 GB. y: [1, 10] long 0/1 (func) or [1, 11] float (struct).
"""
from __future__ import annotations

from typing import Any

import torch
from torch_geometric.data import Data

from labformer.data.graph.pyg_datasets import PyGGraphDataModule, one_hot_columns
from labformer.errors import UserError
from labformer.registry import register

# ogb.utils.features.get_atom_feature_dims() / get_bond_feature_dims(): atomic number, chirality, degree,
# formal charge, hydrogens, radical electrons, hybridisation, aromatic, in ring; bond type, stereo, conjugated.
ATOM_DIMS = (119, 5, 12, 12, 10, 6, 6, 2, 2)
BOND_DIMS = (5, 6, 2)
# registry name: (PyG's name, metric, outputs)
PEPTIDES = {"peptides_func": ("peptides-func", "average_precision", 10),
            "peptides_struct": ("peptides-struct", "mae", 11)}


class PeptidesDataModule(PyGGraphDataModule):
    folder = "lrgb"
    num_node_features, num_edge_features = sum(ATOM_DIMS), sum(BOND_DIMS)

    def __init__(self, dataset: str, **base: Any):
        if dataset not in PEPTIDES:
            raise UserError(f"unknown LRGB peptides dataset '{dataset}'; one of {', '.join(PEPTIDES)}")
        self.name = dataset
        self.pyg_name, self.metric, self.num_classes = PEPTIDES[dataset]  # num_classes: labels or targets
        self.raw_files = tuple(f"{self.pyg_name}/raw/{s}.pt" for s in ("train", "val", "test"))
        self.archives = (f"{self.pyg_name.replace('-', '')}.zip",)
        self.hint = (f"The archive unpacks to {self.pyg_name.replace('-', '')}/{{train,val,test}}.pt: that folder "
                     f"becomes {self.pyg_name}/raw/ (PyG's LRGBDataset does exactly this when it can download).")
        super().__init__(**base)

    def pyg_dataset(self, root: str, split: str) -> Any:
        from torch_geometric.datasets import LRGBDataset

        return LRGBDataset(root, name=self.pyg_name, split=split)

    def url_of(self, raw_file: str) -> str:
        from torch_geometric.datasets import LRGBDataset

        return LRGBDataset.urls[self.pyg_name]

    def convert(self, data: Data) -> Data:
        y = data.y.view(1, -1)
        return Data(x=one_hot_columns(data.x, ATOM_DIMS, torch.uint8, what="OGB atom feature"),
                    edge_index=data.edge_index,
                    edge_attr=one_hot_columns(data.edge_attr, BOND_DIMS, torch.uint8, what="OGB bond feature"),
                    y=y.long() if self.metric == "average_precision" else y.float(), num_nodes=data.num_nodes)


for _name in PEPTIDES:
    register(_name, task="graph", kind="dataset", embedded=False, fixed=dict(dataset=_name))(PeptidesDataModule)
