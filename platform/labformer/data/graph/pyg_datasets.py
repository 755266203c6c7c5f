"""Graph datasets read through PyG's own dataset classes (ZINC, LRGB) inside the platform's data folder.

A PyG dataset class (`torch_geometric.datasets.ZINC(root, ...)`) fetches its raw files into
`root/.../raw/` when they are absent, processes them once into `root/.../processed/` and reads the
processed files from then on. A reader here points it at `<data_dir>/<folder>/` and:
  - raw files present: PyG processes them (once) and reads them; nothing is fetched;
  - absent, `data.download=true` (the default): PyG downloads them from its own URLs. Neither PyG
    nor the platform records their checksums, so these bytes are not verified (use
    `data.download=false` to read only files you placed yourself). A failed download stops with a
    MissingDataError naming each file, its URL and the folder, and leaves no partial archive behind;
  - absent, download off: the same MissingDataError.
Categorical features become one-hot blocks (`one_hot_columns`): every node and edge encoder of
the platform is a linear layer on `x.float()` / `edge_attr.float()`, and a linear layer on a
one-hot block is an embedding table (one row per category, summed over the columns).
"""
from __future__ import annotations

import http.client
import shutil
import zipfile
from pathlib import Path
from typing import Any, Sequence

import torch
from torch_geometric.data import Data

from labformer.data.files import MissingDataError
from labformer.data.graph.base import SPLITS, GraphDataModule
from labformer.errors import UserError

# What a failed download raises inside PyG (urllib's URLError and timeouts are OSErrors).
DOWNLOAD_ERRORS = (OSError, ValueError, http.client.HTTPException, zipfile.BadZipFile)


def one_hot_columns(codes: torch.Tensor, sizes: Sequence[int], dtype: torch.dtype = torch.float32,
                    what: str = "feature") -> torch.Tensor:
    """[N, C] integer codes -> [N, sum(sizes)]: column c one-hot in its own block of sizes[c] entries."""
    codes = codes.long().view(codes.shape[0], -1)
    if codes.shape[1] != len(sizes):
        raise UserError(f"expected {len(sizes)} integer {what} column(s), got {codes.shape[1]}")
    limits = torch.tensor(list(sizes))
    if codes.numel() and ((codes < 0).any() or (codes >= limits).any()):
        bad = int(((codes < 0) | (codes >= limits)).any(0).nonzero()[0])
        raise UserError(f"{what} column {bad} holds {int(codes[:, bad].max())}, outside its {sizes[bad]} "
                        "categories: the files are not the featurisation this reader expects")
    offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0)
    out = torch.zeros(codes.shape[0], int(sum(sizes)), dtype=dtype)
    return out.scatter_(1, codes + offsets, 1)


class PyGGraphDataModule(GraphDataModule):
    """An inductive graph-level dataset whose train/val/test splits come as three PyG datasets."""

    level = "graph"
    folder: str  # under data_dir: PyG's root
    raw_files: tuple[str, ...]  # relative to the folder: what PyG's process() reads
    archives: tuple[str, ...] = ()  # file names PyG's download leaves in the folder while it unpacks
    hint = ""  # appended to the missing-files message: how the archive maps onto the raw files

    # -- per dataset ---------------------------------------------------------------------
    def pyg_dataset(self, root: str, split: str) -> Any:
        """PyG's dataset of one split (it downloads and processes when its files are missing)."""
        raise NotImplementedError

    def url_of(self, raw_file: str) -> str:
        raise NotImplementedError

    def convert(self, data: Data) -> Data:
        """PyG's graph -> the platform's (one-hot features, y as [1, outputs])."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.data_dir.absolute() / self.folder

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node before the others read: PyG's download and its
        # processing (plain torch.save of the processed files) must not run in every DDP process at once.
        self.fetch()
        for split in SPLITS:
            self.split_dataset(split)

    def split_dataset(self, split: str) -> Any:
        """PyG's dataset of one split, opened once per process (what prepare_data opened, load reads)."""
        opened = self.__dict__.setdefault("_opened", {})
        if split not in opened:
            opened[split] = self.pyg_dataset(str(self.root), split)
        return opened[split]

    def load(self) -> tuple[list[Data], dict[str, Any]]:
        self.fetch()
        graphs: list[Data] = []
        index: dict[str, list[int]] = {}
        for split in SPLITS:
            dataset = self.split_dataset(split)
            start = len(graphs)
            graphs += [self.convert(dataset[i]) for i in range(len(dataset))]
            index[split] = list(range(start, len(graphs)))
        self.__dict__.pop("_opened", None)  # converted: PyG's copies are no longer needed
        return graphs, index

    def fetch(self) -> None:
        """Make the raw files present (PyG's download) or raise MissingDataError naming them."""
        root = self.root
        missing = [f for f in self.raw_files if not (root / f).is_file()]
        if not missing:
            return
        if not self.download:
            raise MissingDataError(self.missing_message(missing, "not downloaded (data.download=false)"))
        if len(missing) < len(self.raw_files):  # PyG's download first deletes the raw folder, with what you put there
            raise MissingDataError(self.missing_message(
                missing, "not downloaded: PyG's download would replace the raw folder, and the files already "
                         "in it; add the missing ones, or empty the folder to download them all"))
        created = not root.exists()
        try:
            self.pyg_dataset(str(root), "train")  # PyG downloads, unpacks and processes
        except DOWNLOAD_ERRORS as e:
            if created:
                shutil.rmtree(root, ignore_errors=True)
            else:
                for name in self.archives:  # PyG reuses a file of that name: never leave a torn one
                    (root / name).unlink(missing_ok=True)
            reason = f"download failed: {type(e).__name__}: {getattr(e, 'reason', None) or e}"
            raise MissingDataError(self.missing_message(missing, reason)) from None

    def missing_message(self, missing: Sequence[str], why: str) -> str:
        root = self.root
        lines = [f"dataset '{self.name}': {len(missing)} file(s) not found in {root}/:"]
        for name in missing:
            lines.append(f"  {name}  <- {self.url_of(name)}")
        lines.append(f"      {why}")
        lines.append(f"Fix: on a machine with internet run once with data.download=true (PyG fetches the files "
                     f"into {root}/) and copy that folder here, or put the files there yourself; or point the "
                     f"platform at a data folder that holds {self.folder}/: LABFORMER_DATA_DIR=/path/to/data "
                     "or paths.data_dir=/path/to/data.")
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)
