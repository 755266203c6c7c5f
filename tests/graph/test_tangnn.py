"""TANGNN's two aggregations against its equations, by hand on tiny cases (models/graph/tangnn.py):
top-m attention a_i = sum_{j in T_m(i)} softmax(q_i . k_j / sqrt(d)) v_j over i's own graph, and the
GraphSAGE mean aggregation n_i = W_r h_i + W_l mean_{j -> i} h_j, concatenated as [n_i || a_i]."""
from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from labformer import registry
from labformer.errors import UserError
from labformer.models.graph.tangnn import TopMLayer, sample_neighbours, top_m_attention, top_m_keys

from helpers import build, same_alone_and_batched, tiny_graph


def full_attention(q, k, v):
    """softmax(q k^T / sqrt(d)) v over every key, by hand."""
    return torch.softmax(q @ k.T / math.sqrt(q.shape[1]), dim=1) @ v


def qkv(n: int, d: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g) for _ in range(3))


def test_with_m_at_least_the_graph_size_it_is_full_softmax_attention():
    q, k, v = qkv(5)
    one_graph = torch.zeros(5, dtype=torch.long)
    for m in (5, 9):
        assert torch.allclose(top_m_attention(q, k, v, one_graph, m), full_attention(q, k, v), atol=1e-6)
    # With fewer keys the softmax no longer sees them all, so the outputs must differ.
    assert not torch.allclose(top_m_attention(q, k, v, one_graph, 2), full_attention(q, k, v), atol=1e-3)


def test_with_m_1_each_node_copies_the_value_of_its_most_similar_node():
    q, k, v = qkv(6, seed=1)
    out = top_m_attention(q, k, v, torch.zeros(6, dtype=torch.long), 1)
    best = (q @ k.T).argmax(1)
    assert torch.allclose(out, v[best])
    assert len(set(best.tolist())) > 1  # the case really tells nodes apart


def test_top_m_keeps_only_the_m_best_keys_in_the_softmax():
    q, k, v = qkv(7, seed=2)
    m = 3
    scores = q @ k.T / math.sqrt(4)
    best = scores.topk(m, dim=1).indices
    masked = torch.full_like(scores, float("-inf")).scatter(1, best, scores.gather(1, best))
    expected = torch.softmax(masked, 1) @ v
    assert torch.allclose(top_m_attention(q, k, v, torch.zeros(7, dtype=torch.long), m), expected, atol=1e-6)


def test_nodes_of_different_graphs_never_attend_to_each_other():
    q, k, v = qkv(7, seed=3)
    graph = torch.tensor([0, 0, 1, 1, 1, 1, 0])  # interleaved on purpose: the batch vector need not be sorted
    k[graph == 1] = 50 * q[graph == 0].mean(0)  # graph 1's keys would win every query of graph 0
    keys, real = top_m_keys(q, k, graph, 2)
    assert (graph[keys][real] == graph[:, None].expand_as(keys)[real]).all()
    for g in (0, 1):  # m above both sizes: full attention inside each graph alone
        own = graph == g
        out = top_m_attention(q, k, v, graph, 10)[own]
        assert torch.allclose(out, full_attention(q[own], k[own], v[own]), atol=1e-5)
    # graph 0 has 3 nodes: with m = 4 only 3 of its slots are real
    _, real = top_m_keys(q, k, graph, 4)
    assert real[graph == 0].sum(1).tolist() == [3, 3, 3] and real[graph == 1].sum(1).tolist() == [4] * 4


def test_chunked_selection_equals_the_one_shot_selection():
    q, k, v = qkv(40, seed=4)
    graph = torch.repeat_interleave(torch.arange(3), torch.tensor([15, 5, 20]))
    whole = top_m_attention(q, k, v, graph, 6)
    assert torch.allclose(top_m_attention(q, k, v, graph, 6, chunk=1), whole, atol=1e-6)  # one query row a time


def test_the_layer_concatenates_sage_mean_aggregation_and_top_m_attention_on_a_4_node_graph():
    torch.manual_seed(0)
    layer = TopMLayer(3, 4, top_m=2, num_neighbors=1).eval()  # eval: every neighbour, no sampling
    h = torch.randn(4, 3)
    edge_index = torch.tensor([[0, 2, 3, 1, 1], [1, 1, 1, 0, 2]])  # j -> i; node 3 has no in-neighbour
    mean_in = torch.stack([h[1], (h[0] + h[2] + h[3]) / 3, h[1], torch.zeros(3)])
    sage = layer.neighbours
    near = mean_in @ sage.lin_l.weight.T + sage.lin_l.bias + h @ sage.lin_r.weight.T
    q, k, v = layer.q(h), layer.k(h), layer.v(h)
    scores = q @ k.T / 2.0
    best = scores.topk(2, dim=1).indices
    weights = torch.softmax(scores.gather(1, best), 1)
    far = (weights[..., None] * v[best]).sum(1)
    expected = torch.cat([near, far], 1)
    with torch.no_grad():
        assert torch.allclose(layer(h, edge_index, torch.zeros(4, dtype=torch.long)), expected, atol=1e-5)


def test_training_samples_at_most_num_neighbors_incoming_edges_per_node():
    torch.manual_seed(0)
    edge_index = torch.tensor([[1, 2, 3, 4, 5, 0, 0, 2], [0, 0, 0, 0, 0, 1, 2, 1]])
    existing = set(map(tuple, edge_index.T.tolist()))
    drawn = set()
    for _ in range(20):
        sampled = sample_neighbours(edge_index, 6, 2)
        assert set(map(tuple, sampled.T.tolist())) <= existing
        assert torch.bincount(sampled[1], minlength=6).tolist() == [2, 2, 1, 0, 0, 0]  # min(in-degree, 2)
        drawn |= set(sampled[0, sampled[1] == 0].tolist())
    assert drawn == {1, 2, 3, 4, 5}  # a fresh uniform draw each time, not always the same two


def test_eval_is_deterministic_and_train_samples():
    torch.manual_seed(0)
    # No encodings (their random sign flips in training would differ anyway) and no dropout: only sampling can.
    model = registry.create("graph", "tangnn", in_dim=3, hidden=8, num_neighbors=1, dropout=0.0)
    graph = tiny_graph(12, seed=0)
    batch = Batch.from_data_list([Data(x=graph.x, edge_index=graph.edge_index, num_nodes=12)])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(batch), model(batch))
        full = model(batch)
        model.train()
        assert not torch.allclose(model(batch), full)  # one sampled neighbour instead of the mean of all


def test_a_graph_gives_the_same_outputs_alone_and_batched():
    model = build("tangnn", top_m=50).eval()  # m above both sizes: attention would span the whole batch if leaking
    assert same_alone_and_batched(model, (6, 9))


def test_raw_features_feed_the_first_layer_without_encodings():
    model = registry.create("graph", "tangnn", in_dim=3, hidden=8)
    assert model.encoder is None and model.layers[0].q.in_features == 3
    data = Data(x=torch.randn(5, 3), edge_index=torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]), num_nodes=5)
    assert model(Batch.from_data_list([data])).shape == (5, 16) and model.num_features == 16  # [n || a]


@pytest.mark.parametrize("bad", [dict(top_m=0), dict(num_neighbors=-1), dict(num_layers=0)])
def test_bad_settings_are_refused_with_the_setting_named(bad):
    with pytest.raises(UserError, match=f"model.{next(iter(bad))}"):
        registry.create("graph", "tangnn", in_dim=3, **bad)
