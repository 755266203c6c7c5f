"""PyG 2.8.1's Polynormer crashes in its global phase with heads > 1 (its attention layers are
built for `hidden` channels but receive `heads * hidden`); ours rebuilds them at the right width."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.nn.models import Polynormer as PyGPolynormer

from helpers import build, same_alone_and_batched, tiny_graph


def test_pyg_polynormer_global_phase_with_heads_is_fixed_here():
    batch = Batch.from_data_list([tiny_graph(8, seed=0), tiny_graph(5, seed=1)])
    upstream = PyGPolynormer(3, 8, 2, local_layers=1, global_layers=1, heads=2)
    upstream._global = True
    try:
        upstream(batch.x, batch.edge_index, batch.batch)
        upstream_ok = True
    except RuntimeError:
        upstream_ok = False
    if upstream_ok:
        pytest.fail("PyG's Polynormer now works with heads > 1: drop _fix_global_attention in models/graph/polynormer.py")
    model = build("polynormer", heads=3, hidden=8, use_global=True).train()
    out = model(batch)
    assert out.shape == (13, 24) and model.num_features == 24
    out.sum().backward()
    assert all(p.grad is not None for p in model.global_attn.parameters() if p.requires_grad)


def test_global_phase_keeps_graphs_apart():
    model = build("polynormer", heads=2, hidden=8).eval()
    assert same_alone_and_batched(model, (6, 7))


def test_global_phase_waits_for_the_local_warm_up():
    # The paper trains the local phase alone first; the task tells the model each epoch.
    from labformer.tasks.graph import GraphTask

    batch = Batch.from_data_list([tiny_graph(8, seed=0)])
    model = build("polynormer", heads=2, hidden=8, local_epochs=2).eval()
    task = GraphTask(model, num_classes=2)
    local_only = build("polynormer", heads=2, hidden=8, use_global=False).eval()
    local_only.load_state_dict(model.state_dict())
    seen = []
    for epoch in range(4):
        task.trainer = type("FakeTrainer", (), {"current_epoch": epoch})()  # what Lightning sets during fit
        task.on_train_epoch_start()
        with torch.no_grad():
            seen.append(torch.allclose(model(batch), local_only(batch)))
    assert seen == [True, True, False, False]
    # The phase travels with the weights: a rebuilt model evaluates a checkpoint as it was trained.
    for epoch, expect_local in ((1, True), (3, False)):
        model.set_epoch(epoch)
        rebuilt = build("polynormer", heads=2, hidden=8, local_epochs=2).eval()
        rebuilt.load_state_dict(model.state_dict())
        with torch.no_grad():
            assert torch.allclose(rebuilt(batch), local_only(batch)) == expect_local
