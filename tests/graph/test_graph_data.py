"""Generated graph datasets and the on-disk caches of generation and encodings."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.csgraph as csgraph
import torch
from torch_geometric.utils import to_scipy_sparse_matrix

from labformer import registry
from labformer.data.files import MissingDataError
from labformer.data.graph.cache import apply_cached, cache_file
from labformer.data.graph.encodings import LaplacianPE, RandomWalkSE
from labformer.tasks.graph_metrics import METRIC_NAMES
from labformer.tasks.graph_metrics import kind_of

from conftest import compose_config
from helpers import tiny_graph

SMALL = dict(train_graphs=6, val_graphs=2, test_graphs=2)


def test_pattern_follows_the_sbm_recipe(tmp_path):
    # the benchmark's generator settings (the registered default is CPU-sized)
    dm = registry.create("graph", "pattern", kind="dataset", cache_dir=str(tmp_path), community_size=[5, 35],
                         pattern_size=20, **SMALL)
    assert (dm.level, dm.num_classes, dm.num_node_features, dm.metric) == ("node", 2, 3, "balanced_accuracy")
    dm.setup()
    g = dm.graphs[0]
    assert 5 * 5 + 20 <= g.num_nodes <= 5 * 35 + 20
    assert int(g.y.sum()) == 20, "the planted pattern has 20 nodes"
    assert torch.equal(g.x.sum(1), torch.ones(g.num_nodes)), "one-hot features over {0,1,2}"
    ei = g.edge_index
    assert torch.equal(torch.sort(ei[0] * g.num_nodes + ei[1])[0], torch.sort(ei[1] * g.num_nodes + ei[0])[0])
    assert (ei[0] != ei[1]).all()
    density = ei.shape[1] / (g.num_nodes * (g.num_nodes - 1))
    assert 0.3 < density < 0.5, density  # p=0.5 inside, q=0.35 across communities
    assert [len(dm.split(s)) for s in ("train", "val", "test")] == [6, 2, 2]


def test_generation_is_seeded_and_cached(tmp_path):
    make = lambda seed: registry.create("graph", "cluster", kind="dataset", cache_dir=str(tmp_path), seed=seed,
                                        community_size=[5, 10], **SMALL)
    a = make(0)
    a.setup()
    files = sorted(tmp_path.glob("graphs-*.pt"))
    assert len(files) == 1
    b = make(0)
    b.setup()  # read back from the file
    assert all(torch.equal(x.edge_index, y.edge_index) and torch.equal(x.y, y.y) for x, y in zip(a.graphs, b.graphs))
    c = make(1)
    c.setup()
    assert len(list(tmp_path.glob("graphs-*.pt"))) == 2 and not torch.equal(a.graphs[0].y, c.graphs[0].y)
    g = a.graphs[0]
    assert g.y.max() < 6 and (g.x.argmax(1) > 0).sum() == 6, "one labelled seed node per community"


def test_long_range_marked_nodes_are_far_apart_when_connected(tmp_path):
    dm = registry.create("graph", "long_range", kind="dataset", cache_dir=str(tmp_path), train_graphs=20, val_graphs=2,
                         test_graphs=2, min_distance=6, min_nodes=18, max_nodes=24)
    dm.setup()
    labels = []
    for g in dm.graphs:
        adj = to_scipy_sparse_matrix(g.edge_index, num_nodes=g.num_nodes)
        s, t = torch.nonzero(g.x[:, 1]).view(-1).tolist()
        d = csgraph.shortest_path(adj, indices=[s], unweighted=True)[0, t]
        assert (np.isinf(d) and g.y.item() == 0) or (d >= 6 and g.y.item() == 1), (d, g.y)
        assert csgraph.connected_components(adj)[0] == 2
        labels.append(g.y.item())
    assert 0.3 < np.mean(labels) < 0.7


def test_encoding_cache_invalidates_when_a_setting_changes(tmp_path):
    graphs = [tiny_graph(n, seed=n) for n in (6, 9, 3)]
    for g in graphs:
        del g.lap_pe, g.rw_se
    apply_cached(graphs, LaplacianPE(4), "key", tmp_path)
    first = cache_file(tmp_path, "key", LaplacianPE(4))
    assert first.is_file() and graphs[0].lap_pe.shape == (6, 4) and graphs[2].lap_pe.shape == (3, 4)
    assert cache_file(tmp_path, "key", LaplacianPE(5)) != first, "k is part of the key"
    assert cache_file(tmp_path, "other", LaplacianPE(4)) != first, "the dataset is part of the key"
    # a cached result is loaded, not recomputed: poison the transform and load
    expected = graphs[1].lap_pe.clone()
    for g in graphs:
        del g.lap_pe
    poisoned = LaplacianPE(4)
    poisoned.forward = lambda data: (_ for _ in ()).throw(AssertionError("recomputed"))
    apply_cached(graphs, poisoned, "key", tmp_path)
    assert torch.equal(graphs[1].lap_pe, expected)
    apply_cached(graphs, LaplacianPE(5), "key", tmp_path)  # new setting: computed and stored anew
    assert graphs[1].lap_pe.shape == (9, 5) and len(list(tmp_path.glob("lap_pe-*.pt"))) == 2
    apply_cached(graphs, RandomWalkSE(3), "key", tmp_path)
    assert graphs[0].rw_se.shape == (6, 3) and (graphs[0].rw_se >= 0).all()


def test_laplacian_eigenvectors_are_orthonormal():
    g = tiny_graph(12, seed=0)
    out = LaplacianPE(3)(g)
    pe = out.lap_pe
    assert torch.allclose(pe.T @ pe, torch.eye(3), atol=1e-4)


@pytest.mark.parametrize("name", registry.list_models(task="graph", kind="dataset"))
def test_every_graph_dataset_config_builds_without_reading(name, tmp_path):
    from omegaconf import OmegaConf

    from labformer.builders import build_datamodule

    overrides = ["data.dataset=PROTEINS"] if name == "tu" else []
    cfg = compose_config("task=graph", f"data={name}", f"paths.data_dir={tmp_path / 'nothing'}", *overrides)
    OmegaConf.resolve(cfg)
    dm = build_datamodule(cfg)  # reads nothing: the attributes below come from the class
    if registry.get(name, kind="dataset").meta.get("sizes_from_files"):  # TU: sizes from the label files
        with pytest.raises(MissingDataError, match=r"(?s)_graph_labels\.txt.*graphkerneldatasets.*unzip"):
            dm.num_classes
    else:  # classes (at least 2), labels, or regression targets (ZINC: 1)
        assert dm.num_classes >= (1 if kind_of(dm.metric) == "regression" else 2) and dm.num_node_features >= 1
    assert dm.level in ("node", "graph")
    assert dm.metric in METRIC_NAMES and dm.graphs is None
    assert not (tmp_path / "nothing").exists()
