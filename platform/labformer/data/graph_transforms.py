"""Per-graph preprocessing as PyG transforms, computed once per dataset and cached on disk.

A `CachedTransform` is a PyG `BaseTransform` that adds attributes to a graph and has a
`cache_key` naming every setting that changes its output. `apply_cached` runs it over a
dataset's graphs once and stores only the attributes it added under
`<cache_dir>/<name>-<sha of dataset key + settings>.pt`, so changing a setting (or the
dataset) recomputes and anything else loads from disk.

- `LaplacianPE`   k smallest non-trivial Laplacian eigenvectors (PyG's transform; tiny
                  graphs are zero-padded to k columns). Their sign is arbitrary: the model
                  flips it at random during training.
- `RandomWalkSE`  landing probabilities of 1..steps-step random walks (PyG's transform).
- `ExpanderEdges` Exphormer's random d-regular expander (d/2 random permutations, or d/2
                  random Hamiltonian cycles), stored as `expander_index`.
- `ShortestPaths` all-pairs hop distances (and edge features along one shortest path)
                  for Graphormer; small graphs only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import AddLaplacianEigenvectorPE, AddRandomWalkPE, BaseTransform

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


# -- positional and structural encodings ------------------------------------------------------
class LaplacianPE(CachedTransform):
    """`lap_pe` [N, k]: eigenvectors 2..k+1 of the symmetric normalised Laplacian."""

    name, adds = "lap_pe", ("lap_pe",)

    def __init__(self, k: int):
        self.k = k

    @property
    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "normalization": "sym"}

    def forward(self, data: Data) -> Data:
        n = data.num_nodes
        k = min(self.k, n - 2)  # eigsh/eigh need fewer eigenvectors than nodes
        pe = torch.zeros(n, self.k)
        if k >= 1:
            out = AddLaplacianEigenvectorPE(k, attr_name="_pe", is_undirected=True)(
                Data(edge_index=data.edge_index, num_nodes=n))
            pe[:, :k] = out._pe.float()
        data.lap_pe = pe
        return data


class RandomWalkSE(CachedTransform):
    """`rw_se` [N, steps]: probability that a random walk of 1..steps steps returns home."""

    name, adds = "rw_se", ("rw_se",)

    def __init__(self, steps: int):
        self.steps = steps

    @property
    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "steps": self.steps}

    def forward(self, data: Data) -> Data:
        out = AddRandomWalkPE(self.steps, attr_name="_se")(Data(edge_index=data.edge_index, num_nodes=data.num_nodes))
        data.rw_se = out._se.float()
        return data


# -- Exphormer's expander -----------------------------------------------------------------------
def random_regular_edges(n: int, degree: int, rng: np.random.RandomState, method: str = "permutation") -> np.ndarray:
    """[2, n*degree] directed edges of a random `degree`-regular graph on n nodes (both directions).

    permutation: the union of degree/2 random permutations i -> pi(i), each used in both
      directions (Friedman: such graphs are near-Ramanujan with high probability).
    hamiltonian: the union of degree/2 random Hamiltonian cycles; connected by construction.
    Either may hold self-loops or repeated edges, as in the paper's construction.
    """
    if degree % 2:
        raise ValueError(f"expander degree must be even, got {degree}")
    if n < 2 or degree == 0:
        return np.zeros((2, 0), dtype=np.int64)
    src, dst = [], []
    for _ in range(degree // 2):
        perm = rng.permutation(n)
        if method == "permutation":
            a, b = np.arange(n), perm
        elif method == "hamiltonian":
            a, b = perm, np.roll(perm, -1)
        else:
            raise ValueError(f"unknown expander method '{method}' (permutation | hamiltonian)")
        src += [a, b]
        dst += [b, a]
    return np.stack([np.concatenate(src), np.concatenate(dst)]).astype(np.int64)


class ExpanderEdges(CachedTransform):
    """`expander_index` [2, N*degree]: a fixed random expander per graph (seeded by its order)."""

    name, adds = "expander", ("expander_index",)

    def __init__(self, degree: int = 4, method: str = "permutation", seed: int = 0):
        self.degree, self.method, self.seed = degree, method, seed
        self._rng = np.random.RandomState(seed)

    @property
    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "degree": self.degree, "method": self.method, "seed": self.seed}

    def forward(self, data: Data) -> Data:
        data.expander_index = torch.from_numpy(random_regular_edges(data.num_nodes, self.degree, self._rng,
                                                                    self.method))
        return data


# -- Graphormer's shortest paths ------------------------------------------------------------------
class ShortestPaths(CachedTransform):
    """`spd` [N*N] hop distances (row-major, capped at max_dist + 1 for 'farther or unreachable'),
    and with edge features `spd_edges` [N*N, max_dist * edge_dim]: the features of the edges along
    one shortest path, step by step (zero-padded). O(N^2) per graph: for small graphs."""

    name, adds = "spd", ("spd",)

    def __init__(self, max_dist: int = 5, edge_features: bool = False):
        self.max_dist, self.edge_features = max_dist, edge_features
        if edge_features:
            self.adds = ("spd", "spd_edges")

    @property
    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "max_dist": self.max_dist, "edge_features": self.edge_features}

    def forward(self, data: Data) -> Data:
        n, cap = data.num_nodes, self.max_dist + 1
        ei = data.edge_index.numpy()
        nbrs: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for e, (u, v) in enumerate(ei.T):
            nbrs[u].append((v, e))
        dist = np.full((n, n), cap, dtype=np.int64)
        via = np.full((n, n), -1, dtype=np.int64)  # the edge entering v on a BFS path from s
        parent = np.full((n, n), -1, dtype=np.int64)
        for s in range(n):
            dist[s, s], frontier, d = 0, [s], 0
            while frontier and d < self.max_dist:
                d += 1
                nxt = []
                for u in frontier:
                    for v, e in nbrs[u]:
                        if dist[s, v] == cap and v != s:
                            dist[s, v], via[s, v], parent[s, v] = d, e, u
                            nxt.append(v)
                frontier = nxt
        data.spd = torch.from_numpy(dist.reshape(-1))
        if self.edge_features:
            attr = data.edge_attr.float().view(data.edge_index.shape[1], -1)
            f = attr.shape[1]
            feats = torch.zeros(n, n, self.max_dist, f)
            for s in range(n):
                for t in range(n):
                    k, v = int(dist[s, t]), t
                    if k >= cap or k == 0:
                        continue
                    while v != s:  # walk back from t, filling steps k-1 .. 0
                        k -= 1
                        feats[s, t, k] = attr[via[s, v]]
                        v = int(parent[s, v])
            data.spd_edges = feats.view(n * n, self.max_dist * f)
        return data
