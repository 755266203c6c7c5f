"""Exphormer's sparsity pattern: the expander is a connected d-regular near-Ramanujan graph,
and a node attends to its graph neighbours, expander neighbours and virtual nodes only."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import torch

from labformer.models.graph.exphormer import random_regular_edges

from helpers import build, prepare, tiny_graph


@pytest.mark.parametrize("method", ["permutation", "hamiltonian"])
@pytest.mark.parametrize("degree", [4, 6])
def test_expander_is_regular_connected_and_near_ramanujan(method, degree, capsys):
    n = 400
    edges = random_regular_edges(n, degree, np.random.RandomState(0), method)
    assert edges.shape == (2, n * degree)
    adj = sp.coo_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(n, n)).toarray()
    assert np.allclose(adj, adj.T), "both directions of every edge"
    assert (adj.sum(1) == degree).all(), "d-regular (counting self-loops and repeats as in the paper)"
    assert csgraph.connected_components(adj, directed=False)[0] == 1
    eig = np.sort(np.abs(np.linalg.eigvalsh(adj)))[::-1]
    assert np.isclose(eig[0], degree)
    ramanujan = 2 * np.sqrt(degree - 1)
    with capsys.disabled():
        print(f"\n  expander {method} d={degree} n={n}: lambda_2 = {eig[1]:.3f}, Ramanujan bound 2*sqrt(d-1) = "
              f"{ramanujan:.3f}, spectral gap {degree - eig[1]:.3f}")
    assert eig[1] < degree - 0.1, "a spectral gap: the graph is an expander"
    assert eig[1] < ramanujan + 0.5, "near-Ramanujan (Friedman: lambda_2 <= 2 sqrt(d-1) + eps w.h.p.)"


def test_attention_stays_inside_local_expander_and_virtual_edges():
    torch.manual_seed(0)
    model = build("exphormer", num_virtual=2).eval()
    graphs = [tiny_graph(n, seed=i) for i, n in enumerate((11, 8))]
    batch = prepare(model, graphs)
    n = batch.num_nodes
    with torch.no_grad():
        _, attention = model(batch, return_attention=True)
    allowed = torch.zeros(n + 2 * 2, n + 2 * 2, dtype=torch.bool)
    allowed[batch.edge_index[1], batch.edge_index[0]] = True
    allowed[batch.expander_index[1], batch.expander_index[0]] = True
    for i in range(n):  # every node <-> the two virtual nodes of its own graph
        for v in range(2):
            virtual = n + int(batch.batch[i]) * 2 + v
            allowed[i, virtual] = allowed[virtual, i] = True
    for index, kind, alpha in attention:
        dense = torch.zeros(n + 4, n + 4)
        dense.index_put_((index[1], index[0]), alpha.sum(-1), accumulate=True)  # [target, source]
        assert (dense[~allowed] == 0).all(), "no attention outside the allowed set"
        assert (dense[allowed] > 0).float().mean() > 0.99
        assert torch.allclose(dense.sum(1), torch.full((n + 4,), float(alpha.shape[1])), atol=1e-5)
        # O(N + E) edges, never all pairs; and no pair across graphs except through nothing
        assert index.shape[1] == batch.edge_index.shape[1] + batch.expander_index.shape[1] + 2 * 2 * n
        across = batch.batch[index[0].clamp(max=n - 1)] != batch.batch[index[1].clamp(max=n - 1)]
        assert not (across & (index[0] < n) & (index[1] < n)).any()


def test_attention_output_ignores_nodes_outside_the_set():
    torch.manual_seed(0)
    model = build("exphormer", num_virtual=0)
    attn = model.layers[0].attn
    x = torch.randn(6, 16)
    index = torch.tensor([[1, 2], [0, 0]])  # node 0 attends to 1 and 2 only
    emb = torch.randn(2, 16)
    base = attn(x, index, emb)
    x2 = x.clone()
    x2[3:] += 10.0
    assert torch.allclose(attn(x2, index, emb)[0], base[0])
    x2[1] += 1.0
    assert not torch.allclose(attn(x2, index, emb)[0], base[0])


def test_hamiltonian_variant_and_no_virtual_nodes_train():
    torch.manual_seed(0)
    model = build("exphormer", expander_method="hamiltonian", num_virtual=0)
    batch = prepare(model, [tiny_graph(9, seed=0)])
    model(batch).sum().backward()


def test_missing_expander_edges_is_a_clear_error():
    from torch_geometric.data import Batch

    model = build("exphormer")
    with pytest.raises(ValueError, match="expander_index"):
        model(Batch.from_data_list([tiny_graph(5, seed=0)]))
