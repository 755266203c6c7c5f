"""Generated graph datasets, fixed by a seed: SBM PATTERN and CLUSTER, and a long-range task.

PATTERN and CLUSTER follow the stochastic-block-model recipe of "Benchmarking Graph Neural
Networks" (Dwivedi et al. 2020), node classification over many small graphs:

- PATTERN: 5 communities of 5..35 nodes (edge probability p=0.5 inside, q=0.35 across),
  node features uniform over {0,1,2}. One of 100 fixed random patterns (20 nodes,
  p_P=0.5 inside, each pattern-graph pair joined with q_P=0.5; features also over {0,1,2})
  is planted in each graph; a node's label is 1 when it belongs to the pattern.
- CLUSTER: 6 communities of 5..35 nodes (p=0.55, q=0.25); in each community one random
  node carries its community id (1..6) as feature, every other node 0; the label is the
  community.

long_range ("are the two marked nodes connected?"): two disjoint long chains with short
random chords, so the graph's diameter is far beyond a few message-passing layers; s and
t are marked, t lies on s's chain (at least `min_distance` hops away) or on the other
one. A local MPNN with fewer layers than that distance sees the same neighbourhoods in
both cases; global attention with Laplacian eigenvectors (whose null space marks the
components) can tell them apart.

directed_order ("which half of the order is this node in?"): a directed path 0 -> 1 -> .. -> n-1
with short forward chords i -> j (j - i <= 3), nodes without features; a node's label is 1 in the
first half of the path. Reversing every edge swaps the labels and leaves the symmetrised graph's
distribution unchanged, so a model that sees only undirected structure (message passing over
`edge_index`, LapPE) is at chance; the direction is in `directed_edge_index` (magnetic PE).

Every graph is built from `np.random.RandomState(seed)`, whose stream NumPy keeps fixed,
so a seed gives the same dataset on every machine.
"""
from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data


def _sbm_edges(blocks: np.ndarray, p: float, q: float, rng: np.random.RandomState) -> np.ndarray:
    """Undirected SBM edges (both directions) for nodes with community ids `blocks`."""
    n = len(blocks)
    prob = np.where(blocks[:, None] == blocks[None, :], p, q)
    upper = np.triu(rng.rand(n, n) < prob, k=1)
    src, dst = np.nonzero(upper)
    return np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])


def _community_sizes(rng: np.random.RandomState, k: int, lo: int = 5, hi: int = 35) -> np.ndarray:
    return rng.randint(lo, hi + 1, size=k)


def _to_data(x: np.ndarray, edges: np.ndarray, y: np.ndarray, rng: np.random.RandomState,
             num_features: int, graph_y: bool = False, directed: np.ndarray | None = None) -> Data:
    """One-hot features, nodes in a random order (so the node id carries no label); `directed`: the
    one-way edges, kept as `directed_edge_index` beside the symmetric `edges`."""
    n = len(x)
    order = rng.permutation(n)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    x, y = x[order], (y if graph_y else y[order])
    edge_index = torch.from_numpy(inverse[edges].astype(np.int64))
    feats = torch.nn.functional.one_hot(torch.from_numpy(x.astype(np.int64)), num_features).float()
    data = Data(x=feats, edge_index=edge_index, y=torch.as_tensor(y, dtype=torch.long).view(-1), num_nodes=n)
    if directed is not None:
        data.directed_edge_index = torch.from_numpy(inverse[directed].astype(np.int64))
    return data


def make_pattern(num_graphs: int, seed: int, num_communities: int = 5, pattern_size: int = 20,
                 num_patterns: int = 100, p: float = 0.5, q: float = 0.35, p_pattern: float = 0.5,
                 q_pattern: float = 0.5, vocab: int = 3, community_size: tuple[int, int] = (5, 35)) -> list[Data]:
    rng = np.random.RandomState(seed)
    patterns = []
    for _ in range(num_patterns):
        inner = _sbm_edges(np.zeros(pattern_size, dtype=np.int64), p_pattern, p_pattern, rng)
        patterns.append((inner, rng.randint(vocab, size=pattern_size)))
    graphs = []
    for _ in range(num_graphs):
        blocks = np.repeat(np.arange(num_communities), _community_sizes(rng, num_communities, *community_size))
        n_g = len(blocks)
        base = _sbm_edges(blocks, p, q, rng)
        inner, pattern_x = patterns[rng.randint(num_patterns)]
        cross = np.nonzero(rng.rand(n_g, pattern_size) < q_pattern)
        g_nodes, p_nodes = cross[0], cross[1] + n_g
        edges = np.concatenate([base, inner + n_g, np.stack([g_nodes, p_nodes]), np.stack([p_nodes, g_nodes])], 1)
        x = np.concatenate([rng.randint(vocab, size=n_g), pattern_x])
        y = np.concatenate([np.zeros(n_g, dtype=np.int64), np.ones(pattern_size, dtype=np.int64)])
        graphs.append(_to_data(x, edges, y, rng, vocab))
    return graphs


def make_cluster(num_graphs: int, seed: int, num_communities: int = 6, p: float = 0.55,
                 q: float = 0.25, community_size: tuple[int, int] = (5, 35)) -> list[Data]:
    rng = np.random.RandomState(seed)
    graphs = []
    for _ in range(num_graphs):
        sizes = _community_sizes(rng, num_communities, *community_size)
        blocks = np.repeat(np.arange(num_communities), sizes)
        edges = _sbm_edges(blocks, p, q, rng)
        x = np.zeros(len(blocks), dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        x[starts + rng.randint(sizes)] = np.arange(1, num_communities + 1)  # one seed node per community
        graphs.append(_to_data(x, edges, blocks, rng, num_communities + 1))
    return graphs


def _chain(n: int, offset: int, chord_prob: float, rng: np.random.RandomState) -> np.ndarray:
    """A path 0..n-1 plus chords i -- i+2 with probability chord_prob (diameter about n/2 or more)."""
    i = np.arange(n - 1)
    src, dst = [i], [i + 1]
    j = np.nonzero(rng.rand(max(n - 2, 0)) < chord_prob)[0]
    src.append(j)
    dst.append(j + 2)
    s, d = np.concatenate(src) + offset, np.concatenate(dst) + offset
    return np.stack([np.concatenate([s, d]), np.concatenate([d, s])])


def make_long_range(num_graphs: int, seed: int, min_nodes: int = 24, max_nodes: int = 40,
                    min_distance: int = 8, chord_prob: float = 0.3) -> list[Data]:
    """Graph-level binary labels: 1 when the two marked nodes are connected."""
    rng = np.random.RandomState(seed)
    graphs = []
    for i in range(num_graphs):
        n_a, n_b = rng.randint(min_nodes, max_nodes + 1, size=2)
        edges = np.concatenate([_chain(n_a, 0, chord_prob, rng), _chain(n_b, n_a, chord_prob, rng)], 1)
        connected = i % 2 == 0  # balanced classes
        s = rng.randint(0, max(1, n_a // 4))
        if connected:
            # t far along the same chain: chords at most halve the hop count.
            t = rng.randint(min(n_a - 1, s + 2 * min_distance), n_a)
        else:
            t = n_a + rng.randint(n_b)
        x = np.zeros(n_a + n_b, dtype=np.int64)
        x[[s, t]] = 1
        graphs.append(_to_data(x, edges, np.array([int(connected)]), rng, 2, graph_y=True))
    return graphs


def make_directed_order(num_graphs: int, seed: int, min_nodes: int = 16, max_nodes: int = 48,
                        chord_prob: float = 0.3) -> list[Data]:
    """Node labels: 1 for the first half of a directed path with forward chords (module docstring)."""
    rng = np.random.RandomState(seed)
    graphs = []
    for _ in range(num_graphs):
        n = 2 * rng.randint(min_nodes // 2, max_nodes // 2 + 1)  # even: both halves the same size
        path = np.stack([np.arange(n - 1), np.arange(1, n)])
        starts = np.nonzero(rng.rand(n) < chord_prob)[0]
        ends = starts + rng.randint(2, 4, size=len(starts))
        chords = np.stack([starts, ends])[:, ends < n]
        directed = np.concatenate([path, chords], 1)
        both = np.concatenate([directed, directed[::-1]], 1)
        y = (np.arange(n) < n // 2).astype(np.int64)
        graphs.append(_to_data(np.zeros(n, dtype=np.int64), both, y, rng, 1, directed=directed))
    return graphs
