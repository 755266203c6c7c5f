"""GAT's `residual` option: residual=false is the PyG GAT stack exactly as before; residual=true is
Platonov et al.'s pre-LayerNorm residual stack (h <- h + Dropout(GELU(GATConv(LN(h)))), final LN),
which trains at 16 layers. The shared helper also leaves gcn's residual variant as it was."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.data import Batch
from torch_geometric.nn import GCNConv
from torch_geometric.nn.models import GAT as PyGGAT

from labformer import registry
from labformer.errors import UserError
from labformer.models.graph.common import EdgeEncoder, NodeEncoder
from labformer.tasks.graph import GraphTask

from helpers import EDGE_DIM, IN_DIM, LAP, RW, build, tiny_graph


def batch_of(*sizes: int) -> Batch:
    return Batch.from_data_list([tiny_graph(n, seed=n) for n in sizes])


class GATBefore(nn.Module):
    """gat.py's model before `residual` existed (the residual=false path must stay this, bit for bit)."""

    def __init__(self, hidden, num_layers, heads, dropout, in_dropout, v2, norm):
        super().__init__()
        self.in_dropout = in_dropout
        self.encoder = NodeEncoder(IN_DIM, hidden, LAP, RW)
        self.edges = EdgeEncoder(EDGE_DIM, hidden)
        self.gnn = PyGGAT(hidden, hidden, num_layers, dropout=dropout, heads=heads, v2=v2, norm=norm, edge_dim=hidden)

    def forward(self, batch):
        h = F.dropout(self.encoder(batch), self.in_dropout, self.training)
        return self.gnn(h, batch.edge_index, edge_attr=self.edges(batch))


class ResidualGCNBefore(nn.Module):
    """gcn.py's residual variant before its loop moved to common.PreNormResidual."""

    def __init__(self, hidden, num_layers, dropout, in_dropout):
        super().__init__()
        self.dropout, self.in_dropout = dropout, in_dropout
        self.encoder = NodeEncoder(IN_DIM, hidden, LAP, RW)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))
        self.convs = nn.ModuleList(GCNConv(hidden, hidden) for _ in range(num_layers))
        self.out_norm = nn.LayerNorm(hidden)

    def forward(self, batch):
        h = F.dropout(self.encoder(batch), self.in_dropout, self.training)
        for norm, conv in zip(self.norms, self.convs):
            h = h + F.dropout(F.gelu(conv(norm(h), batch.edge_index)), self.dropout, self.training)
        return self.out_norm(h)


def assert_same_model(new: nn.Module, old: nn.Module, batch: Batch) -> None:
    tree = lambda model: [(k, type(m).__name__, repr(m)) for k, m in model.named_modules() if k]  # below the root
    assert tree(new) == tree(old), "same module tree"
    new_state, old_state = new.state_dict(), old.state_dict()
    assert list(new_state) == list(old_state)
    assert all(torch.equal(new_state[k], old_state[k]) for k in new_state), "same initial weights for one seed"
    for train in (False, True):  # eval, and train mode with the same dropout masks
        new.train(train), old.train(train)
        torch.manual_seed(1)
        a = new(batch)
        torch.manual_seed(1)
        b = old(batch)
        assert torch.equal(a, b), f"train={train}"


@pytest.mark.parametrize("v2, norm", [(False, None), (True, None), (False, "batch_norm")])
def test_residual_false_is_the_pyg_gat_stack_as_before(v2, norm):
    settings = dict(hidden=16, num_layers=3, heads=2, dropout=0.3, in_dropout=0.1, v2=v2, norm=norm)
    torch.manual_seed(0)
    new = build("gat", residual=False, **settings)
    torch.manual_seed(0)
    old = GATBefore(**settings)
    assert isinstance(new.gnn, PyGGAT)
    assert_same_model(new, old, batch_of(7, 5))


def test_gcn_residual_is_unchanged_by_the_shared_helper():
    torch.manual_seed(0)
    new = build("gcn", residual=True, hidden=16, num_layers=3, dropout=0.3, in_dropout=0.1)
    torch.manual_seed(0)
    old = ResidualGCNBefore(16, 3, 0.3, 0.1)
    assert_same_model(new, old, batch_of(7, 5))


@pytest.mark.parametrize("v2, edges", [(False, True), (True, True), (False, False)])
def test_every_residual_layer_is_h_plus_gelu_conv_of_layernorm_h(v2, edges):
    model = registry.create("graph", "gat", in_dim=IN_DIM, edge_dim=EDGE_DIM if edges else 0, lap_pe_dim=LAP,
                            rw_se_dim=RW, residual=True, num_layers=3, hidden=16, heads=4, v2=v2, dropout=0.5,
                            in_dropout=0.2)
    conv_type = "GATv2Conv" if v2 else "GATConv"
    assert [type(c).__name__ for c in model.convs] == [conv_type] * 3
    assert all(c.heads == 4 and c.out_channels == 4 and c.concat for c in model.convs), "4 heads x 4 = hidden"
    model.eval()  # dropout off
    seen: list[torch.Tensor] = []  # the input of each LayerNorm: h_0 .. h_L (the last goes into out_norm)
    for norm in [*model.norms, model.out_norm]:
        norm.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    batch = batch_of(6, 9)
    with torch.no_grad():
        out = model(batch)
        h = model.encoder(batch)
        e = model.edges(batch)
        assert (e is not None) == edges
        for layer, (norm, conv) in enumerate(zip(model.norms, model.convs)):
            assert torch.allclose(seen[layer], h, atol=1e-6), f"input of layer {layer}"
            x = F.layer_norm(h, (16,), norm.weight, norm.bias, norm.eps)  # LN by hand, with the layer's affine
            assert torch.allclose(x, norm(h), atol=1e-6)
            update = conv(x, batch.edge_index, edge_attr=e) if edges else conv(x, batch.edge_index)
            h = h + F.gelu(update)
            assert torch.allclose(seen[layer + 1], h, atol=1e-5), f"output of layer {layer}"
        assert torch.allclose(out, model.out_norm(h), atol=1e-6), "final LayerNorm"


@pytest.mark.parametrize("v2", [False, True])
def test_sixteen_residual_layers_train_a_step_with_finite_gradients(v2):
    torch.manual_seed(0)
    backbone = build("gat", residual=True, num_layers=16, hidden=16, heads=2, dropout=0.1, v2=v2)
    task = GraphTask(backbone, num_classes=2, level="node")
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-3)
    batch = batch_of(12, 9, 7)
    loss = F.cross_entropy(task(batch), batch.y)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in backbone.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"  # the first of 16 layers too
    before = [p.detach().clone() for p in backbone.parameters()]
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in backbone.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, backbone.parameters()))
    assert torch.isfinite(F.cross_entropy(task(batch), batch.y))


def test_bad_settings_name_the_fix():
    with pytest.raises(UserError, match=r"model\.residual=true.*Fix: model\.norm=null"):
        build("gat", residual=True, norm="batch_norm")
    with pytest.raises(UserError, match=r"model\.hidden=30 must be divisible by model\.heads=8.*Fix"):
        build("gat", residual=True, hidden=30, heads=8)
