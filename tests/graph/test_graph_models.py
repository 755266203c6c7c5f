"""Every registered graph backbone is permutation-equivariant (relabelling the nodes relabels
the outputs), except those registered `exactly_equivariant=False`: TokenGT labels nodes with
identifiers, so it is equivariant only in expectation over them (Kim et al. 2022); the gradient of every parameter is checked in tests/models/test_backbones.py."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from labformer import registry
from labformer.errors import UserError

from helpers import build, prepare, tiny_graph

MODELS = registry.list_models(task="graph")
EQUIVARIANT = [m for m in MODELS if registry.get(m, task="graph").meta.get("exactly_equivariant", True)]


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


@pytest.mark.parametrize("name", EQUIVARIANT)
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
