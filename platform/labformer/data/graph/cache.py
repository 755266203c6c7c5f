"""Per-graph preprocessing as PyG transforms, computed once per dataset and cached on disk.

A `CachedTransform` is a PyG `BaseTransform` that adds attributes to a graph and has a
`cache_key` naming every setting that changes its output. `apply_cached` runs it over a
dataset's graphs once and stores only the attributes it added under
`<cache_dir>/<name>-<sha of dataset key + settings>.pt`, so changing a setting (or the
dataset) recomputes and anything else loads from disk. Encodings any model may use live
in encodings.py; a transform one model needs lives beside that model (Exphormer's
expander, Graphormer's shortest paths).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

log = logging.getLogger("labformer")


# -- packing a list of graphs (or of their added attributes) into a few tensors ----------------
def _cat_dim(key: str) -> int:
    return 1 if key.endswith("_index") else 0  # PyG's convention: *_index tensors are [2, E]


def pack(graphs: Sequence[Data], keys: Sequence[str]) -> dict[str, Any]:
    """{key: concatenated tensor, key+'__sizes': per-graph sizes}; undone by `unpack`."""
    out: dict[str, Any] = {"num_nodes": torch.tensor([g.num_nodes for g in graphs])}
    for key in keys:
        parts = [g[key] for g in graphs]
        dim = _cat_dim(key)
        out[key] = torch.cat(parts, dim=dim)
        out[key + "__sizes"] = torch.tensor([p.shape[dim] for p in parts])
    return out


def unpack(blob: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
    keys = [k for k in blob if not k.endswith("__sizes") and k != "num_nodes"]
    n = len(blob["num_nodes"])
    rows: list[dict[str, torch.Tensor]] = [{"num_nodes": int(blob["num_nodes"][i])} for i in range(n)]
    for key in keys:
        for row, part in zip(rows, blob[key].split(blob[key + "__sizes"].tolist(), dim=_cat_dim(key))):
            row[key] = part
    return rows


def save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def settings_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- the cache --------------------------------------------------------------------------------
class CachedTransform(BaseTransform):
    name: str = "transform"
    adds: tuple[str, ...] = ()  # attribute names it writes

    @property
    def cache_key(self) -> dict[str, Any]:
        raise NotImplementedError


def cache_file(cache_dir: str | Path, dataset_key: str, transform: CachedTransform) -> Path:
    return Path(cache_dir) / f"{transform.name}-{settings_hash(dataset_key, transform.cache_key)}.pt"


def apply_cached(graphs: list[Data], transform: CachedTransform, dataset_key: str,
                 cache_dir: str | Path | None) -> list[Data]:
    """Add `transform`'s attributes to every graph in place (from disk when cached)."""
    path = cache_file(cache_dir, dataset_key, transform) if cache_dir is not None else None
    if path is not None and path.is_file():
        rows = unpack(torch.load(path, map_location="cpu", weights_only=True))
        if len(rows) == len(graphs) and all(r["num_nodes"] == g.num_nodes for r, g in zip(rows, graphs)):
            for g, row in zip(graphs, rows):
                for key in transform.adds:
                    g[key] = row[key]
            return graphs
        log.warning("cache %s does not match the dataset; recomputing it", path)
    for g in graphs:
        out = transform(g)  # PyG transforms work on a shallow copy
        for key in transform.adds:
            g[key] = out[key]
    if path is not None:
        save_atomic(pack(graphs, transform.adds), path)
        log.info("cached %s for %d graphs in %s", transform.name, len(graphs), path)
    return graphs

