"""The file readers parse the real files of the shared data directory (skipped, with the
reason, when they are absent) and name what is missing otherwise."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from labformer import registry
from labformer.errors import UserError

from conftest import require_data

DATA = Path(os.environ.get("LABFORMER_DATA_DIR", "data"))



def make(name: str, tmp_path, **kw):
    return registry.create("graph", name, kind="dataset", data_dir=str(DATA), cache_dir=str(tmp_path), download=False,
                           **kw)


def test_cora_public_split(tmp_path):
    require_data("planetoid/ind.cora.graph")
    dm = make("cora", tmp_path)
    dm.setup()
    g = dm.graphs[0]
    assert (g.num_nodes, g.x.shape[1], dm.num_classes) == (2708, 1433, 7)
    assert g.edge_index.shape[1] == 10556  # 5278 undirected edges, both directions
    masks = dm.split_index
    assert [int(masks[s].sum()) for s in ("train", "val", "test")] == [140, 500, 1000]
    assert not (masks["train"] & masks["test"]).any()
    assert torch.bincount(g.y[masks["train"]], minlength=7).tolist() == [20] * 7  # 20 per class
    assert torch.allclose(g.x.sum(1)[g.x.sum(1) > 0], torch.ones(1))
    (view,) = dm.split("val")
    assert view.mask.sum() == 500 and view.x.data_ptr() == g.x.data_ptr(), "split views share the tensors"


@pytest.mark.parametrize("split", [0, 7])
def test_minesweeper_splits_and_symmetric_edges(tmp_path, split):
    require_data("heterophilous/minesweeper.npz")
    dm = make("minesweeper", tmp_path, split=split)
    assert (dm.metric, dm.num_classes, dm.num_node_features) == ("auroc", 2, 7)
    dm.setup()
    g = dm.graphs[0]
    assert g.num_nodes == 10000 and g.edge_index.shape[1] == 2 * 39402
    ei = g.edge_index
    assert torch.equal(torch.sort(ei[0] * 10000 + ei[1])[0], torch.sort(ei[1] * 10000 + ei[0])[0])
    m = dm.split_index
    assert [int(m[s].sum()) for s in ("train", "val", "test")] == [5000, 2500, 2500]
    assert not (m["train"] & m["val"]).any() and not (m["val"] & m["test"]).any()


def test_mutag_stratified_folds(tmp_path):
    require_data("mutag/MUTAG_A.txt")
    folds = []
    for fold in (0, 1):
        dm = make("mutag", tmp_path, fold=fold)
        dm.setup()
        folds.append(set(dm.split_index["test"]))
        assert len(dm.graphs) == 188 and sum(len(v) for v in dm.split_index.values()) == 188
    g = dm.graphs[0]
    assert g.x.shape[1] == 7 and g.edge_attr.shape == (g.edge_index.shape[1], 4) and g.y.item() in (0, 1)
    assert g.edge_index.max() < g.num_nodes
    assert not folds[0] & folds[1], "test folds are disjoint"
    labels = torch.cat([dm.graphs[i].y for i in dm.split_index["test"]]).float().mean()
    assert 0.5 < labels < 0.8  # MUTAG is 2:1 positive, kept in every fold


def test_missing_files_name_the_files_and_the_fix(tmp_path):
    dm = registry.create("graph", "tolokers", kind="dataset", data_dir=str(tmp_path / "empty"), download=True)
    with pytest.raises(UserError) as e:
        dm.setup()
    msg = str(e.value)
    assert "tolokers.npz" in msg and "heterophilous" in msg and "https://" in msg


def write_planetoid(folder: Path, name: str, test_ids: list[int], n_alltrain: int, features: int, classes: int) -> None:
    """A tiny dataset in Planetoid's real format: Python pickles of scipy CSR / one-hot arrays, a dict graph."""
    import pickle

    import numpy as np
    import scipy.sparse as sp

    rng = np.random.RandomState(0)
    onehot = lambda n: np.eye(classes)[rng.randint(0, classes, n)]  # noqa: E731
    parts = {"x": sp.csr_matrix(rng.rand(2, features)), "y": onehot(2),
             "allx": sp.csr_matrix(rng.rand(n_alltrain, features)), "ally": onehot(n_alltrain),
             "tx": sp.csr_matrix(rng.rand(len(test_ids), features)), "ty": onehot(len(test_ids)),
             "graph": {0: [1, 5], 1: [0], 5: [0, max(test_ids)]}}
    folder.mkdir(parents=True, exist_ok=True)
    for part, value in parts.items():
        (folder / f"ind.{name}.{part}").write_bytes(pickle.dumps(value, protocol=2))
    (folder / f"ind.{name}.test.index").write_text("\n".join(map(str, test_ids)) + "\n")
    return parts


def test_citeseer_format_with_isolated_test_ids(tmp_path):
    # CiteSeer's test ids leave gaps: those nodes exist (zero features) but are in no split.
    from labformer.data.graph.planetoid import read_planetoid

    parts = write_planetoid(tmp_path / "planetoid", "citeseer", [9, 6, 12], n_alltrain=6, features=5, classes=3)
    x, y, graph, n_train, test_ids = read_planetoid(tmp_path / "planetoid", "citeseer", None)
    assert x.shape == (13, 5) and n_train == 2 and test_ids.tolist() == [9, 6, 12]
    assert np.allclose(x[9], parts["tx"].toarray()[0]) and np.allclose(x[6], parts["tx"].toarray()[1])
    assert y[12] == parts["ty"][2].argmax() and not x[[7, 8, 10, 11]].any()
    dm = registry.create("graph", "citeseer", kind="dataset", data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"),
                         download=False)
    dm.num_node_features, dm.num_classes = 5, 3  # the tiny copy's sizes (the real ones: 3703 and 6)
    with pytest.raises(UserError, match="sha256"):  # the real files' checksums guard the unpickling
        dm.load()
    dm.checksums = None
    (g,), masks = dm.load()
    assert g.num_nodes == 13 and int(masks["train"].sum()) == 2
    assert masks["test"].nonzero().view(-1).tolist() == [6, 9, 12]
    assert int(masks["val"].sum()) == 11  # the next 500 nodes: this tiny copy has 11 after the training ones


def test_missing_planetoid_files_name_them_and_where_to_get_them(tmp_path):
    dm = registry.create("graph", "pubmed", kind="dataset", data_dir=str(tmp_path), download=True)
    assert (dm.num_node_features, dm.num_classes) == (500, 3)
    with pytest.raises(UserError, match=r"(?s)ind\.pubmed\.x.*ind\.pubmed\.test\.index.*kimiyoung/planetoid"):
        dm.setup()


def test_filtered_chameleon_in_its_real_format(tmp_path):
    # The heterophilous-graphs .npz layout: features, labels, edges once per pair, 10 split masks.
    rng = np.random.RandomState(0)
    n, masks = 8, np.zeros((10, 8), dtype=bool)
    masks[:, :4] = True
    (tmp_path / "heterophilous").mkdir()
    np.savez(tmp_path / "heterophilous" / "chameleon_filtered.npz", node_features=rng.rand(n, 2325).astype(np.float32),
             node_labels=rng.randint(0, 5, n), edges=np.array([[0, 1], [1, 2], [5, 7]]), train_masks=masks,
             val_masks=np.roll(masks, 4, axis=1) & ~masks, test_masks=np.zeros((10, n), dtype=bool))
    dm = registry.create("graph", "chameleon_filtered", kind="dataset", data_dir=str(tmp_path), download=False,
                         cache_dir=str(tmp_path / "cache"))
    assert (dm.metric, dm.num_classes, dm.num_node_features) == ("accuracy", 5, 2325)
    dm.setup()
    g = dm.graphs[0]
    assert g.num_nodes == 8 and g.edge_index.shape[1] == 6  # both directions of the 3 stored edges
    assert int(dm.split_index["train"].sum()) == 4 and int(dm.split_index["val"].sum()) == 4


def write_tu(folder: Path, prefix: str, graphs: list[int], labels: list[int], node_labels: bool,
             attributes: bool = False) -> None:
    """TU's text format: 1-based node ids, every edge in both directions (here: a ring per graph)."""
    folder.mkdir(parents=True)
    edges, indicator, start = [], [], 1
    for g, n in enumerate(graphs):
        indicator += [g + 1] * n
        for i in range(n):
            a, b = start + i, start + (i + 1) % n
            edges += [(a, b), (b, a)]
        start += n
    (folder / f"{prefix}_A.txt").write_text("".join(f"{a}, {b}\n" for a, b in edges))
    (folder / f"{prefix}_graph_indicator.txt").write_text("".join(f"{g}\n" for g in indicator))
    (folder / f"{prefix}_graph_labels.txt").write_text("".join(f"{y}\n" for y in labels))
    if node_labels:
        (folder / f"{prefix}_node_labels.txt").write_text("".join(f"{i % 3}\n" for i in range(len(indicator))))
    if attributes:
        (folder / f"{prefix}_node_attributes.txt").write_text("".join(f"{i}.5, {-i}.0\n" for i in range(len(indicator))))


def test_any_tu_dataset_by_prefix_with_labels_and_attributes(tmp_path):
    write_tu(tmp_path / "TINY", "TINY", graphs=[3, 4] * 10, labels=[1, 2] * 10, node_labels=True, attributes=True)
    dm = registry.create("graph", "tu", kind="dataset", data_dir=str(tmp_path), dataset="TINY", node_attributes=True,
                         cache_dir=str(tmp_path / "cache"))
    assert (dm.num_classes, dm.num_node_features, dm.num_edge_features) == (2, 3 + 2, 0)
    dm.setup()
    g = dm.graphs[1]
    assert g.num_nodes == 4 and g.edge_index.shape[1] == 8 and g.y.item() == 1
    # its first node is the 4th node of the file: label 3 % 3 = 0, attributes 3.5, -3.0
    assert torch.equal(g.x[0, :3], torch.tensor([1.0, 0.0, 0.0])) and g.x[0, 3:].tolist() == [3.5, -3.0]
    sizes = {s: len(v) for s, v in dm.split_index.items()}
    assert sizes["test"] == 2 and sizes["val"] == 2 and sum(sizes.values()) == 20  # 10% of the 18 training graphs


def test_a_social_tu_dataset_gets_one_hot_degrees(tmp_path):
    write_tu(tmp_path / "imdb_binary", "IMDB-BINARY", graphs=[5] * 20, labels=[0, 1] * 10, node_labels=False)
    dm = registry.create("graph", "imdb_binary", kind="dataset", data_dir=str(tmp_path), degree_cap=3,
                         cache_dir=str(tmp_path / "cache"))
    assert dm.num_node_features == 4  # degrees 0..3
    dm.setup()
    assert torch.equal(dm.graphs[0].x, torch.nn.functional.one_hot(torch.full((5,), 2), 4).float())  # ring: degree 2


def test_tu_needs_its_prefix_and_names_missing_files(tmp_path):
    with pytest.raises(UserError, match="data.dataset=<NAME>"):
        registry.create("graph", "tu", kind="dataset", data_dir=str(tmp_path))
    dm = registry.create("graph", "enzymes", kind="dataset", data_dir=str(tmp_path))
    with pytest.raises(UserError, match=r"(?s)ENZYMES_A\.txt.*ENZYMES\.zip.*unzip its \.txt files"):
        dm.num_node_features
