"""Magnetic-Laplacian positional encodings (Geisler et al. 2023): q = 0 is the symmetric normalised
Laplacian of the symmetrised graph, q > 0 tells edge directions apart, the output is reproducible
and cached, and `data.mag_pe_dim` reaches the models' NodeEncoder."""
from __future__ import annotations

import copy

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import get_laplacian, to_dense_adj, to_undirected

from labformer import registry
from labformer.data.graph import magnetic
from labformer.data.graph.cache import apply_cached, cache_file
from labformer.data.graph.magnetic import MagneticLaplacianPE, magnetic_eigh, magnetic_laplacian
from labformer.errors import UserError

from helpers import build, prepare, tiny_graph


def random_digraph(n: int, m: int, seed: int) -> torch.Tensor:
    """Directed edges: a directed ring (no isolated node) plus m random ones, some reciprocal."""
    g = torch.Generator().manual_seed(seed)
    ring = torch.arange(n)
    extra = torch.randint(0, n, (2, m), generator=g)
    edges = torch.cat([torch.stack([ring, (ring + 1) % n]), extra, extra[:, : m // 4].flip(0)], dim=1)
    return edges[:, edges[0] != edges[1]]


def dense_laplacian(edge_index: torch.Tensor, n: int, q: float) -> torch.Tensor:
    index, value = magnetic_laplacian(edge_index, n, q)
    lap = torch.eye(n, dtype=value.dtype)
    lap[index[0], index[1]] += value
    return lap


def symmetric_normalised_laplacian(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """PyG's I - D^-1/2 A_s D^-1/2 of the symmetrised, binary graph: the reference for q = 0."""
    edges = to_undirected(edge_index, num_nodes=n)
    ones = torch.ones(edges.shape[1], dtype=torch.float64)
    index, weight = get_laplacian(edges, ones, normalization="sym", num_nodes=n)
    return to_dense_adj(index, edge_attr=weight, max_num_nodes=n)[0]


def projectors_match(u: torch.Tensor, v: torch.Tensor, lam: torch.Tensor, atol: float) -> int:
    """Compare u_i u_i^H with v_i v_i^H for every eigenvalue apart from its neighbours; returns how many."""
    gaps = lam.diff().abs()
    checked = 0
    for i in range(len(lam)):
        if (i > 0 and gaps[i - 1] < 1e-4) or (i < len(gaps) and gaps[i] < 1e-4):
            continue  # a repeated eigenvalue: only the eigenspace is defined
        p_u = torch.outer(u[:, i], u[:, i].conj())
        p_v = torch.outer(v[:, i], v[:, i].conj()).to(p_u.dtype)
        assert torch.allclose(p_u, p_v, atol=atol), f"eigenvector {i}"
        checked += 1
    return checked


def test_q_zero_is_the_symmetric_normalised_laplacian_of_the_symmetrised_graph():
    n, edge_index = 14, random_digraph(14, 20, seed=0)
    ref_lam, ref_vec = torch.linalg.eigh(symmetric_normalised_laplacian(edge_index, n))
    lap = dense_laplacian(edge_index, n, 0.0)
    assert not lap.is_complex()
    assert torch.allclose(lap, symmetric_normalised_laplacian(edge_index, n), rtol=0, atol=1e-12)
    lam, vec = magnetic_eigh(edge_index, n, 0.0, k=n)
    assert torch.allclose(lam, ref_lam, atol=1e-10)
    assert projectors_match(vec, ref_vec, ref_lam, atol=1e-8) >= n // 2
    # the cached features: [Re U, Im U] for the k = 6 smallest, Im U exactly 0
    pe = MagneticLaplacianPE(6, q=0.0)(Data(edge_index=edge_index, num_nodes=n)).mag_pe
    assert pe.shape == (n, 12) and pe.dtype == torch.float32
    assert torch.equal(pe[:, 6:], torch.zeros(n, 6)), "imaginary parts are zero at q = 0"
    projectors_match(pe[:, :6].double(), ref_vec[:, :6], ref_lam[:6], atol=1e-5)


@pytest.mark.parametrize("q", [0.1, 0.25])
def test_it_is_the_hermitian_magnetic_laplacian_and_its_smallest_eigenpairs(q):
    n, edge_index = 12, random_digraph(12, 18, seed=1)
    lap = dense_laplacian(edge_index, n, q)
    assert lap.is_complex() and torch.allclose(lap, lap.conj().T)
    a = to_dense_adj(edge_index, max_num_nodes=n)[0].clamp(max=1).double()  # A_uv: the edge u -> v
    a_s = ((a + a.T) > 0).double()
    d = a_s.sum(1).rsqrt()
    h = a_s * torch.polar(torch.ones_like(a), 2 * torch.pi * q * (a - a.T))
    assert torch.allclose(lap, torch.eye(n) - d[:, None] * h * d[None, :]), "L = I - D^-1/2 (A_s . exp(i Theta)) D^-1/2"
    lam, vec = magnetic_eigh(edge_index, n, q, k=4)
    assert torch.allclose(lam, torch.linalg.eigvalsh(lap)[:4], atol=1e-10) and (lam >= -1e-10).all()
    assert torch.allclose(lap @ vec, vec * lam, atol=1e-10), "L u = lambda u"
    assert torch.allclose(vec.conj().T @ vec, torch.eye(4).cdouble()), "orthonormal"
    pivot = vec.abs().argmax(0)
    top = vec[pivot, torch.arange(4)]
    assert torch.allclose(top.imag, torch.zeros(4, dtype=torch.float64), atol=1e-12) and (top.real > 0).all(), \
        "each eigenvector's largest entry is real positive"
    assert vec.imag.abs().max() > 1e-3, "direction shows in the phases"


def test_q_positive_tells_a_directed_path_from_its_reverse():
    path = Data(edge_index=torch.tensor([[0, 1], [1, 2]]), num_nodes=3)  # 0 -> 1 -> 2
    reverse = Data(edge_index=path.edge_index.flip(0), num_nodes=3)  # 2 -> 1 -> 0
    encode = lambda q, g: MagneticLaplacianPE(3, q)(copy.copy(g)).mag_pe
    assert torch.equal(encode(0.0, path), encode(0.0, reverse)), "q = 0 sees only the undirected path"
    forward, backward = encode(0.25, path), encode(0.25, reverse)
    assert not torch.allclose(forward, backward, atol=1e-3), "q > 0 sees the direction"
    # reversing every edge conjugates L: same real half, imaginary half negated
    assert torch.allclose(forward[:, :3], backward[:, :3], atol=1e-6)
    assert torch.allclose(forward[:, 3:], -backward[:, 3:], atol=1e-6)
    assert forward[:, 3:].abs().max() > 0.1


def test_edges_in_both_directions_give_the_real_undirected_encoding():
    g = tiny_graph(10, seed=3)  # the data contract: every edge in both directions
    encode = lambda q: MagneticLaplacianPE(4, q)(copy.copy(g)).mag_pe
    assert torch.equal(encode(0.25), encode(0.0)) and not encode(0.25)[:, 4:].any()


def test_the_transform_is_reproducible_and_cached(tmp_path):
    graphs = [Data(edge_index=random_digraph(n, n, seed=n), num_nodes=n) for n in (9, 5, 13)]
    transform = MagneticLaplacianPE(4, 0.25)
    first = [transform(copy.copy(g)).mag_pe for g in graphs]
    assert all(torch.equal(a, transform(copy.copy(g)).mag_pe) for a, g in zip(first, graphs)), "same output twice"
    apply_cached(graphs, transform, "key", tmp_path)
    path = cache_file(tmp_path, "key", transform)
    assert path.is_file() and all(torch.equal(g.mag_pe, a) for g, a in zip(graphs, first))
    assert cache_file(tmp_path, "key", MagneticLaplacianPE(4, 0.1)) != path, "q is part of the key"
    assert cache_file(tmp_path, "key", MagneticLaplacianPE(5, 0.25)) != path, "k is part of the key"
    for g in graphs:
        del g.mag_pe
    poisoned = MagneticLaplacianPE(4, 0.25)
    poisoned.forward = lambda data: (_ for _ in ()).throw(AssertionError("recomputed"))
    apply_cached(graphs, poisoned, "key", tmp_path)  # loaded from disk
    assert all(torch.equal(g.mag_pe, a) for g, a in zip(graphs, first))


def test_more_eigenvectors_than_nodes_are_zero_padded():
    pe = MagneticLaplacianPE(5, 0.25)(Data(edge_index=torch.tensor([[0, 1], [1, 2]]), num_nodes=3)).mag_pe
    assert pe.shape == (3, 10)
    assert torch.equal(pe[:, 3:5], torch.zeros(3, 2)) and torch.equal(pe[:, 8:], torch.zeros(3, 2))
    assert pe[:, :3].abs().sum() > 0 and pe[:, 5:8].abs().sum() > 0
    isolated = MagneticLaplacianPE(2, 0.25)(Data(edge_index=torch.zeros(2, 0, dtype=torch.long), num_nodes=1)).mag_pe
    assert torch.equal(isolated, torch.tensor([[1.0, 0.0, 0.0, 0.0]])), "an isolated node: L = [1]"


def test_large_graphs_take_the_sparse_solver_with_the_same_result(monkeypatch):
    n, edge_index = 150, random_digraph(150, 300, seed=2)
    dense = magnetic_eigh(edge_index, n, 0.2, k=5)
    monkeypatch.setattr(magnetic, "DENSE_MAX_NODES", 50)
    sparse = magnetic_eigh(edge_index, n, 0.2, k=5)
    assert torch.allclose(dense[0], sparse[0], atol=1e-8)
    assert torch.allclose(dense[1], sparse[1], atol=1e-6), "same phase convention, so the same vectors"


def test_bad_settings_name_the_fix():
    with pytest.raises(UserError, match=r"data\.mag_pe_q=0\.7 is out of range.*Fix: 0 <= data\.mag_pe_q <= 0\.5"):
        MagneticLaplacianPE(4, 0.7)
    with pytest.raises(UserError, match=r"data\.mag_pe_dim=0.*Fix"):
        MagneticLaplacianPE(0)
    with pytest.raises(UserError, match=r"data\.mag_pe_q=-0\.1"):
        registry.create("graph", "pattern", kind="dataset", mag_pe_dim=4, mag_pe_q=-0.1)
    with pytest.raises(UserError, match=r"data\.mag_pe_dim=-1"):
        registry.create("graph", "pattern", kind="dataset", mag_pe_dim=-1)


def test_data_mag_pe_dim_reaches_the_models(tmp_path):
    dm = registry.create("graph", "pattern", kind="dataset", cache_dir=str(tmp_path), train_graphs=3, val_graphs=1,
                         test_graphs=1, community_size=[5, 8], pattern_size=6, mag_pe_dim=3, mag_pe_q=0.1)
    dm.setup()
    assert all(g.mag_pe.shape == (g.num_nodes, 6) for g in dm.graphs)
    assert list(tmp_path.glob("mag_pe-*.pt")), "cached like lap_pe"
    for name in registry.list_models(task="graph"):
        model = build(name, mag_pe_dim=3)
        assert model.encoder.mag.in_features == 6, name
        batch = prepare(model, [tiny_graph(n, seed=n) for n in (6, 8)])
        batch.mag_pe = torch.randn(batch.num_nodes, 6, generator=torch.Generator().manual_seed(0))
        model.eval()
        with torch.no_grad():
            a = model(batch)
            batch.mag_pe = batch.mag_pe + 1
            assert not torch.allclose(a, model(batch)), f"{name} reads mag_pe"


def test_directed_order_keeps_the_one_way_edges_and_hides_the_direction_from_edge_index(tmp_path):
    dm = registry.create("graph", "directed_order", kind="dataset", cache_dir=str(tmp_path), train_graphs=4,
                         val_graphs=1, test_graphs=1, min_nodes=8, max_nodes=12)
    dm.setup()
    for g in dm.graphs:
        n, directed = g.num_nodes, g.directed_edge_index
        assert n % 2 == 0 and int(g.y.sum()) == n // 2  # two halves of one size
        # the symmetric edge_index is exactly the directed edges both ways
        both = torch.cat([directed, directed.flip(0)], 1)
        assert sorted(map(tuple, g.edge_index.t().tolist())) == sorted(map(tuple, both.t().tolist()))
        # A DAG holding a Hamiltonian path has one topological order: peel off the node without predecessors.
        order, left = torch.zeros(n, dtype=torch.long), set(range(n))
        for position in range(n):
            src, dst = directed
            alive = torch.tensor([int(u) in left for u in src])
            has_pred = set(dst[alive].tolist())
            (first,) = [v for v in left if v not in has_pred]
            order[first] = position
            left.remove(first)
        assert bool((g.y == (order < n // 2).long()).all())
    # the PE reads the direction: phases, where edge_index alone would give a real encoding
    assert all(g.mag_pe[:, 8:].abs().max() > 1e-3 for g in dm.graphs)
    assert "directed_edge_index" in next(iter(dm.train_dataloader()))
