"""TokenGT (models/graph/tokengt.py): node identifiers (orf, lap), the node+edge tokenisation, the
per-graph padding mask, and eval determinism. Registry-driven checks (contract, gradients) live in
tests/models/test_backbones.py."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from labformer.data.graph.encodings import LaplacianPE
from labformer.errors import UserError
from labformer.models.graph.tokengt import tokenize

from helpers import build, prepare, tiny_graph


def orthonormal_per_graph(p: torch.Tensor, batch: Batch) -> None:
    for g in range(batch.num_graphs):
        rows = p[batch.batch == g]
        assert torch.allclose(rows @ rows.T, torch.eye(len(rows)), atol=1e-5), g


def test_orf_node_identifiers_are_orthonormal_within_each_graph():
    torch.manual_seed(0)
    model = build("tokengt", node_id_dim=16)
    batch = prepare(model, [tiny_graph(n, seed=n) for n in (5, 16, 9)])  # 16: d_p = N, a full basis
    for train in (True, False):
        p = model.train(train).node_identifiers(batch)
        assert p.shape == (batch.num_nodes, 16)
        orthonormal_per_graph(p, batch)


def test_tokens_of_a_hand_graph_are_nodes_then_edges_with_their_identifiers():
    # 3 nodes, 2 (directed) edges 0->1, 1->2: 5 tokens [X, P_v, P_v] x3 then [X_e, P_u, P_v] x2.
    batch = Batch.from_data_list([Data(x=torch.randn(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]), num_nodes=3)])
    x_node, x_edge, p = torch.randn(3, 4), torch.randn(2, 4), torch.randn(3, 5)
    tokens, is_edge, keep, slot = tokenize(batch, x_node, x_edge, p)
    assert tokens.shape == (1, 5, 4 + 2 * 5) and keep.all() and slot.tolist() == [0, 1, 2]
    assert is_edge[0].tolist() == [False, False, False, True, True]
    feats, ids_u, ids_v = tokens[0, :, :4], tokens[0, :, 4:9], tokens[0, :, 9:]
    assert torch.equal(feats, torch.cat([x_node, x_edge]))
    assert torch.equal(ids_u[:3], p) and torch.equal(ids_v[:3], p)  # nodes: [P_v, P_v]
    assert torch.equal(ids_u[3:], p[[0, 1]]) and torch.equal(ids_v[3:], p[[1, 2]])  # edges: [P_u, P_v]


def test_tokens_of_a_second_graph_start_at_its_own_first_slot():
    a = Data(x=torch.randn(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]), num_nodes=3)
    b = Data(x=torch.randn(2, 2), edge_index=torch.tensor([[0], [1]]), num_nodes=2)
    batch = Batch.from_data_list([a, b])
    p = torch.arange(5.0)[:, None]
    tokens, is_edge, keep, slot = tokenize(batch, torch.zeros(5, 1), torch.zeros(3, 1), p)
    assert tokens.shape[:2] == (2, 5) and keep.sum(1).tolist() == [5, 3] and slot.tolist() == [0, 1, 2, 0, 1]
    assert tokens[1, :3, 1:].tolist() == [[3, 3], [4, 4], [3, 4]]  # graph B's nodes 3, 4 and its edge 3->4
    assert is_edge[1].tolist() == [False, False, True, False, False]


def test_perturbing_one_graph_never_changes_another_graphs_outputs():
    torch.manual_seed(0)
    model = build("tokengt").eval()
    a, b = tiny_graph(6, seed=1), tiny_graph(9, seed=2)
    bigger = tiny_graph(14, seed=3)  # more tokens: graph A gets more padding
    changed = b.clone()
    changed.x = changed.x + 5.0
    with torch.no_grad():
        alone = model(prepare(model, [a]))
        for other in (b, changed, bigger):
            out = model(prepare(model, [a, other]))
            assert torch.allclose(out[:6], alone, atol=1e-5), (out[:6] - alone).abs().max()
        assert not torch.allclose(model(prepare(model, [a, b]))[6:], model(prepare(model, [a, changed]))[6:])


def test_eval_is_deterministic_while_training_draws_new_orfs():
    torch.manual_seed(0)
    model = build("tokengt")
    batch = prepare(model, [tiny_graph(n, seed=n) for n in (7, 10)])
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(batch), model(batch))
        assert torch.equal(model.node_identifiers(batch), model.node_identifiers(batch))
        model.train()
        assert not torch.allclose(model.node_identifiers(batch), model.node_identifiers(batch))
        assert not torch.allclose(model(batch), model(batch))


def same_up_to_column_sign(got: torch.Tensor, want: torch.Tensor) -> bool:
    return all(torch.allclose(got[:, j], want[:, j], atol=1e-5) or torch.allclose(got[:, j], -want[:, j], atol=1e-5)
               for j in range(want.shape[1]))


def test_lap_node_identifiers_are_the_laplacian_eigenvectors_up_to_sign_in_training():
    torch.manual_seed(0)
    model = build("tokengt", node_id="lap", node_id_dim=4)
    graphs = [tiny_graph(n, seed=n) for n in (7, 10)]
    batch = prepare(model, graphs)
    # LaplacianPE (PyG's transform) gives each eigenvector a random sign when it computes it
    expected = [LaplacianPE(4)(g.clone()).lap_pe for g in graphs]
    in_eval = model.eval().node_identifiers(batch)
    assert torch.equal(in_eval, batch.node_id_lap)  # eval: the cached eigenvectors as they are
    flips = [model.train().node_identifiers(batch) for _ in range(8)]
    assert any(not torch.equal(f, in_eval) for f in flips), "training flips signs"
    for p in [in_eval, *flips]:
        for g, want in enumerate(expected):
            assert same_up_to_column_sign(p[batch.batch == g], want), g
    assert model.max_nodes == 256 and model(batch).shape == (batch.num_nodes, model.num_features)


def test_bad_settings_and_oversized_graphs_are_user_errors():
    with pytest.raises(UserError, match="model.node_id='rand'"):
        build("tokengt", node_id="rand")
    with pytest.raises(UserError, match="model.node_id_dim=0"):
        build("tokengt", node_id_dim=0)
    with pytest.raises(UserError, match="model.hidden=16 must be divisible by model.heads=3"):
        build("tokengt", heads=3)
    model = build("tokengt", node_id_dim=8)
    assert model.max_nodes == 8  # the DataModule refuses bigger graphs up front
    with pytest.raises(UserError, match=r"model.node_id_dim=8 .* 12 nodes.*Fix"):
        model(prepare(model, [tiny_graph(12, seed=0)]))
