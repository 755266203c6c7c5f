"""ZINC (Irwin et al. 2012) as in "Benchmarking GNNs" (Dwivedi et al., JMLR 2023): graph regression
of the constrained solubility (penalised logP), scored by the test MAE. Default: the 12k subset with
its fixed split of 10,000 / 1,000 / 1,000 molecules; `data.subset=false`: all 249,456 (220,011 /
24,445 / 5,000).

Read through PyG's `torch_geometric.datasets.ZINC` (pyg_datasets.py) in `<data_dir>/zinc/`: its
`process()` reads `raw/{train,val,test}.pickle` (lists of molecules: `atom_type` [N], `bond_type`
[N, N] adjacency of bond types, `logP_SA_cycle_normalized` [1]) and, for the subset,
`raw/{train,val,test}.index` (one line of comma-separated molecule ids); it writes
`subset/processed/` (or `full/processed/`). The pickles come as one archive (molecules.zip, whose
folder `molecules/` becomes `raw/`), the index files from the benchmarking-gnns repository.

Features, as in the benchmark (28 atom types, 4 bond types, embedded): the atom type one-hot
(x [N, 28]) and the bond type one-hot (edge_attr [E, 4]; 1 single, 2 double, 3 triple); y [1, 1].
"""
from __future__ import annotations

from typing import Any

from torch_geometric.data import Data

from labformer.data.graph.pyg_datasets import PyGGraphDataModule, one_hot_columns
from labformer.registry import register

ATOM_TYPES, BOND_TYPES = 28, 4  # Dwivedi et al.'s num_atom_type / num_bond_type for ZINC


class ZINCDataModule(PyGGraphDataModule):
    name, folder, metric = "zinc", "zinc", "mae"
    num_classes, num_node_features, num_edge_features = 1, ATOM_TYPES, BOND_TYPES  # num_classes: one target
    raw_files = tuple(f"raw/{s}.{ext}" for ext in ("pickle", "index") for s in ("train", "val", "test"))
    archives = ("molecules.zip",)
    hint = ("The archive unpacks to molecules/{train,val,test}.pickle: put those in raw/, beside the three "
            ".index files (PyG's torch_geometric.datasets.ZINC does exactly this when it can download).")

    def __init__(self, subset: bool = True, **base: Any):
        """subset: the 12k molecules of the benchmark (false: the full 250k; the .index files are then unused)."""
        self.subset = subset
        super().__init__(**base)
        if not subset:
            self.raw_files = tuple(f for f in self.raw_files if f.endswith(".pickle"))

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "subset": self.subset}

    def pyg_dataset(self, root: str, split: str) -> Any:
        from torch_geometric.datasets import ZINC

        return ZINC(root, subset=self.subset, split=split)

    def url_of(self, raw_file: str) -> str:
        from torch_geometric.datasets import ZINC

        split, ext = raw_file.split("/")[-1].split(".")
        return ZINC.split_url.format(split) if ext == "index" else ZINC.url

    def convert(self, data: Data) -> Data:
        return Data(x=one_hot_columns(data.x, [ATOM_TYPES], what="ZINC atom type"),
                    edge_index=data.edge_index,
                    edge_attr=one_hot_columns(data.edge_attr, [BOND_TYPES], what="ZINC bond type"),
                    y=data.y.float().view(1, 1), num_nodes=data.num_nodes)


register("zinc", task="graph", kind="dataset", embedded=False)(ZINCDataModule)
