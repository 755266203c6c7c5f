"""Every registered backbone of every family, built from its config (`model=<name>`): it meets its
family's contract, maps tiny input to the family's output, and every parameter receives a finite,
non-zero gradient through the family's task (exemptions below, each with its reason)."""
from __future__ import annotations

from fnmatch import fnmatch

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch

from labformer import registry
from labformer.config_store import entry_config
from labformer.models.graph.base import GraphBackbone
from labformer.models.lm.base import LMBackbone
from labformer.models.timeseries.base import ForecastBackbone
from labformer.models.vision.base import VisionBackbone
from labformer.tasks.graph import GraphTask
from labformer.tasks.lm import LMTask
from labformer.tasks.timeseries import TimeSeriesTask
from labformer.tasks.vision import VisionTask

from graph_samples import EDGE_DIM, IN_DIM, LAP, RW, tiny_graph

# Test size: fewer and narrower layers where a setting allows it (the slow ones: ViT-S, T2T-14, TNT).
SMALLER = {"depth": 2, "num_layers": 2, "num_blocks": 2, "local_layers": 2, "global_layers": 1, "hidden": 16}
# Parameters that legitimately get no gradient (shell patterns, at the test size of 2 layers).
EXEMPT: dict[str, tuple[str, ...]] = {
    # The paper's layer updates the edge stream in every layer, the last one's feeds nothing; and
    # `no_edge` stands in for edge features only on data without them (here there are some).
    "graph_transformer": ("layers.1.o_e.*", "layers.1.bn_e*", "layers.1.ffn_e.*", "no_edge"),
    # The LM contract's states are SMITH's word level (what its masked word LM reads); the document level
    # above it is trained by the contrastive objectives (tests/contrastive/test_smith.py).
    "smith": ("document.*",),
}

CASES = [pytest.param(e.name, family, id=f"{family}-{e.name}")
         for family in ("vision", "graph", "lm", "timeseries") for e in registry.entries(task=family)]


def build(name: str, family: str, **inputs):
    cfg = entry_config(registry.get(name, task=family))
    cfg.pop("name")
    cfg.update({k: v for k, v in SMALLER.items() if isinstance(cfg.get(k), int)})
    return registry.create(family, name, **inputs, **cfg)


def vision_case(name: str):
    backbone = build(name, "vision", in_chans=1, img_size=28)
    task = VisionTask(backbone, num_classes=10)
    images, labels = torch.randn(3, 1, 28, 28), torch.randint(0, 10, (3,))
    assert backbone(images).shape == (3, backbone.num_features)
    assert build(name, "vision", in_chans=3, img_size=32)(torch.randn(2, 3, 32, 32)).shape[1] > 0
    return backbone, VisionBackbone, F.cross_entropy(task(images), labels)


def graph_case(name: str):
    backbone = build(name, "graph", in_dim=IN_DIM, edge_dim=EDGE_DIM, lap_pe_dim=LAP, rw_se_dim=RW)
    task = GraphTask(backbone, num_classes=2, level="graph")
    graphs = [tiny_graph(n, seed=i, graph_label=True) for i, n in enumerate((7, 12, 9))]
    if backbone.data_transform is not None:  # what the DataModule computes and caches
        graphs = [backbone.data_transform(g) for g in graphs]
    batch = Batch.from_data_list(graphs)
    assert backbone(batch).shape == (batch.num_nodes, backbone.num_features)
    return backbone, GraphBackbone, F.cross_entropy(task(batch), batch.y)


def lm_case(name: str):
    backbone = build(name, "lm", vocab_size=11, max_len=16, causal=True)
    task = LMTask(backbone, vocab_size=11)
    tokens = torch.randint(0, 11, (3, 16))
    assert backbone(tokens).shape == (3, 16, backbone.num_features)
    return backbone, LMBackbone, F.cross_entropy(task(tokens).flatten(0, 1), tokens.roll(-1, 1).flatten())


def timeseries_case(name: str):
    backbone = build(name, "timeseries", lookback=32, horizon=8, channels=3)
    task = TimeSeriesTask(backbone, horizon=8, channels=3)
    x, y = torch.randn(4, 32, 3), torch.randn(4, 8, 3)
    assert backbone(x).shape == (4, 8, 3)
    return backbone, ForecastBackbone, task.criterion(task(x), y)


@pytest.mark.parametrize("name, family", CASES)
def test_backbone_meets_its_contract_and_every_parameter_learns(name, family, one_torch_thread):
    torch.manual_seed(0)
    backbone, contract, loss = globals()[f"{family}_case"](name)
    assert isinstance(backbone, contract), f"{name} does not meet the {family} backbone contract"
    assert backbone.num_features > 0 if family != "timeseries" else True
    assert torch.isfinite(loss)
    loss.backward()
    exempt = EXEMPT.get(name, ())
    silent = [n for n, p in backbone.named_parameters() if not any(fnmatch(n, pattern) for pattern in exempt)
              and (p.grad is None or not p.grad.abs().sum() or not torch.isfinite(p.grad).all())]
    assert not silent, f"no (finite) gradient reaches {silent}"


def test_the_listing_counts_the_parameters_of_every_backbone():
    from labformer.__main__ import parameter_count

    counts = {e.name: parameter_count(e) for e in registry.entries()}
    assert not [n for n, c in counts.items() if c.startswith("?")], counts
    assert counts["gpt"] == "0.81M"  # nanoGPT's CPU configuration at tiny-shakespeare's 65 symbols
