"""Every registered graph backbone: builds from its config, trains a step at node and graph
level, and is permutation-equivariant (relabelling the nodes relabels the outputs)."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from labformer import registry
from labformer.errors import UserError
from labformer.tasks.graph import GraphTask

from helpers import build, prepare, tiny_graph

MODELS = registry.list_models(task="graph")


def permute(data: Data, perm: torch.Tensor) -> Data:
    """The same graph with node i renamed to position where perm == i (all per-node data moved)."""
    n = data.num_nodes
    new_id = torch.empty_like(perm)
    new_id[perm] = torch.arange(n)
    out = data.clone()
    for key, value in data.items():
        if key.endswith("_index"):
            out[key] = new_id[value]
        elif key in ("x", "lap_pe", "rw_se") or (key == "y" and value.shape[0] == n):
            out[key] = value[perm]
        elif key in ("spd", "spd_edges"):
            out[key] = value.view(n, n, -1)[perm][:, perm].reshape(value.shape)
    return out


@pytest.mark.parametrize("level", ["node", "graph"])
@pytest.mark.parametrize("name", MODELS)
def test_trains_a_step(name, level):
    torch.manual_seed(0)
    model = build(name)
    assert model.num_features > 0
    task = GraphTask(model, num_classes=2, level=level)
    graphs = [tiny_graph(n, seed=i, graph_label=level == "graph") for i, n in enumerate((7, 12, 9))]
    batch = prepare(model, graphs)
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-2)
    task.train()
    logits = task(batch)
    assert logits.shape == ((batch.num_nodes if level == "node" else 3), 2)
    loss = torch.nn.functional.cross_entropy(logits, batch.y)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    assert sum(g is not None and g.abs().sum() > 0 for g in grads) > len(grads) // 2, "most weights learn"
    optimizer.step()
    assert torch.isfinite(task(batch)).all()


@pytest.mark.parametrize("name", MODELS)
def test_node_outputs_are_permutation_equivariant(name):
    torch.manual_seed(0)
    model = build(name).eval()
    graph = prepare(model, [tiny_graph(10, seed=3)]).to_data_list()[0]
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(1))

    with torch.no_grad():
        out = model(Batch.from_data_list([graph]))
        out_perm = model(Batch.from_data_list([permute(graph, perm)]))
    assert torch.allclose(out[perm], out_perm, atol=1e-4), (out[perm] - out_perm).abs().max()


def test_gcn_without_encodings_convolves_the_raw_features():
    from labformer import registry as reg
    from torch_geometric.data import Batch

    model = reg.create("graph", "gcn", in_dim=3, hidden=8)
    assert model.encoder is None and model.gnn.convs[0].in_channels == 3
    graph = tiny_graph(6, seed=0)
    assert model(Batch.from_data_list([graph])).shape == (6, 8)


def test_residual_gcn_follows_its_update_rule():
    # h <- h + GELU(GCNConv(LayerNorm(h))) per layer, after an input projection; LayerNorm at the end.
    torch.manual_seed(0)
    model = registry.create("graph", "gcn", in_dim=3, hidden=8, num_layers=2, dropout=0.0, residual=True).eval()
    batch = Batch.from_data_list([tiny_graph(6, seed=0)])
    h = model.encoder(batch)
    for norm, conv in zip(model.norms, model.convs):
        h = h + torch.nn.functional.gelu(conv(norm(h), batch.edge_index))
    assert torch.allclose(model(batch), model.out_norm(h), atol=1e-6)
    with pytest.raises(UserError, match="model.residual=true"):
        registry.create("graph", "gcn", in_dim=3, residual=True, norm="layer_norm")
