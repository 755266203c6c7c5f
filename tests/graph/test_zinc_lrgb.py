"""ZINC-12k and LRGB Peptides through PyG's own dataset classes: tiny files in PyG's real raw format
(what ZINC.process() and LRGBDataset.process() read), the regression and multilabel metrics, the
monitor's direction, the clear error without files, and the paper tables."""
from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from labformer import pipeline, registry
from labformer.builders import build_callbacks, build_datamodule, build_task, config_dict
from labformer.data.files import MissingDataError
from labformer.data.graph.lrgb import ATOM_DIMS, BOND_DIMS
from labformer.results.reproduce import expected_config, load_table
from labformer.tasks.graph import GraphTask

from conftest import compose_config

ZINC_INDEX = {"train": [0, 2, 3, 5, 6, 7], "val": [1, 4], "test": [0, 3]}  # the subset's ids in each pickle
PEPTIDES = {"train": 6, "val": 3, "test": 3}


def molecule(n: int, seed: int) -> dict:
    """One entry of ZINC's raw pickles: atom types, a symmetric adjacency of bond types, the target."""
    g = torch.Generator().manual_seed(seed)
    bonds = torch.zeros(n, n, dtype=torch.long)
    for i in range(n - 1):  # a chain, plus one ring bond
        bonds[i, i + 1] = bonds[i + 1, i] = 1 + (i % 3)
    bonds[0, n - 1] = bonds[n - 1, 0] = 1
    return {"atom_type": torch.randint(0, 28, (n,), generator=g), "bond_type": bonds,
            "logP_SA_cycle_normalized": torch.randn(1, generator=g)}


def write_zinc(data_dir: Path) -> dict[str, list[dict]]:
    raw = data_dir / "zinc" / "raw"
    raw.mkdir(parents=True)
    mols = {}
    for k, split in enumerate(("train", "val", "test")):
        mols[split] = [molecule(5 + i % 4, seed=10 * k + i) for i in range(8)]
        with open(raw / f"{split}.pickle", "wb") as f:
            pickle.dump(mols[split], f)
        (raw / f"{split}.index").write_text(",".join(map(str, ZINC_INDEX[split])) + "\n")
    return mols


def peptide(n: int, outputs: int, seed: int, multilabel: bool) -> tuple:
    """One entry of LRGB's raw peptides-*.pt: (x [N, 9], edge_attr [E, 3], edge_index [2, E], y [1, T])."""
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(0, d, (n,), generator=g) for d in ATOM_DIMS], dim=1)
    src = torch.arange(n - 1)
    edge_index = torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])
    half = torch.stack([torch.randint(0, d, (n - 1,), generator=g) for d in BOND_DIMS], dim=1)
    edge_attr = torch.cat([half, half])
    y = (torch.rand(1, outputs, generator=g) > 0.5).float() if multilabel else torch.randn(1, outputs, generator=g)
    return x, edge_attr, edge_index, y


def write_peptides(data_dir: Path, name: str) -> dict[str, list[tuple]]:
    raw = data_dir / "lrgb" / name / "raw"
    raw.mkdir(parents=True)
    out = {}
    for k, (split, count) in enumerate(PEPTIDES.items()):
        out[split] = [peptide(6 + i % 3, 10 if name == "peptides-func" else 11, 100 * k + i,
                              multilabel=name == "peptides-func") for i in range(count)]
        torch.save(out[split], raw / f"{split}.pt")
    return out


def make(name: str, data_dir: Path, **kw):
    return registry.create("graph", name, kind="dataset", data_dir=str(data_dir), **kw)


# -- the readers ---------------------------------------------------------------------------------
def test_zinc_subset_reads_the_indexed_molecules_with_one_hot_atoms_and_bonds(tmp_path):
    mols = write_zinc(tmp_path)
    dm = make("zinc", tmp_path, download=False)
    assert (dm.level, dm.metric, dm.num_classes, dm.num_node_features, dm.num_edge_features) == \
        ("graph", "mae", 1, 28, 4)
    dm.setup()
    assert {s: len(dm.split(s)) for s in ("train", "val", "test")} == {s: len(v) for s, v in ZINC_INDEX.items()}
    for split in ("train", "test"):
        for g, mol_id in zip(dm.split(split), ZINC_INDEX[split]):
            mol = mols[split][mol_id]
            assert torch.equal(g.x.argmax(1), mol["atom_type"]) and torch.equal(g.x.sum(1), torch.ones(g.num_nodes))
            assert g.edge_attr.shape == (g.edge_index.shape[1], 4) and g.edge_attr.dtype == torch.float32
            bonds = mol["bond_type"][g.edge_index[0], g.edge_index[1]]
            assert torch.equal(g.edge_attr.argmax(1), bonds)
            assert g.edge_index.shape[1] == int((mol["bond_type"] > 0).sum())
            assert g.y.shape == (1, 1) and g.y.dtype == torch.float32
            assert g.y.item() == pytest.approx(mol["logP_SA_cycle_normalized"].item())
    assert (tmp_path / "zinc" / "subset" / "processed" / "train.pt").is_file(), "PyG processed the files there"


@pytest.mark.parametrize("name", ["peptides_func", "peptides_struct"])
def test_peptides_read_the_ogb_features_as_one_hot_blocks(tmp_path, name):
    pyg_name = name.replace("_", "-")
    raw = write_peptides(tmp_path, pyg_name)
    dm = make(name, tmp_path, download=False)
    outputs, metric = (10, "average_precision") if name == "peptides_func" else (11, "mae")
    assert (dm.level, dm.metric, dm.num_classes, dm.num_node_features, dm.num_edge_features) == \
        ("graph", metric, outputs, 174, 13)
    dm.setup()
    assert {s: len(dm.split(s)) for s in PEPTIDES} == PEPTIDES
    g, (x, edge_attr, edge_index, y) = dm.split("val")[1], raw["val"][1]
    assert g.x.shape == (x.shape[0], 174) and torch.equal(g.x.sum(1), torch.full((x.shape[0],), 9, dtype=torch.uint8))
    offsets = torch.tensor([0, *ATOM_DIMS[:-1]]).cumsum(0)
    assert torch.equal(g.x.nonzero()[:, 1].view(-1, 9), x + offsets)  # column c -> its block, at its code
    assert g.edge_attr.shape == (edge_index.shape[1], 13)
    bond_offsets = torch.tensor([0, *BOND_DIMS[:-1]]).cumsum(0)
    assert torch.equal(g.edge_attr.nonzero()[:, 1].view(-1, 3), edge_attr + bond_offsets)
    assert torch.equal(g.edge_index, edge_index) and g.y.shape == (1, outputs)
    assert g.y.dtype == (torch.long if metric == "average_precision" else torch.float32)
    assert torch.allclose(g.y.float(), y)
    batch = next(iter(dm.train_dataloader()))
    assert batch.y.shape == (min(dm.batch_size, PEPTIDES["train"]), outputs)


def test_missing_files_name_them_the_urls_and_the_folder(tmp_path):
    with pytest.raises(MissingDataError) as e:
        make("zinc", tmp_path / "empty", download=False).setup()
    msg = str(e.value)
    for piece in ("raw/train.pickle", "raw/test.index", "molecules.zip", "benchmarking-gnns", "data.download=false",
                  str((tmp_path / "empty" / "zinc").absolute()), "LABFORMER_DATA_DIR"):
        assert piece in msg, piece
    with pytest.raises(MissingDataError) as e:
        make("peptides_struct", tmp_path / "empty", download=False).setup()
    assert "peptides-struct/raw/train.pt" in str(e.value) and "peptidesstruct.zip" in str(e.value)
    assert not (tmp_path / "empty").exists()


def test_a_partial_raw_folder_is_never_handed_to_pygs_download(tmp_path):
    write_zinc(tmp_path)
    (tmp_path / "zinc" / "raw" / "val.index").unlink()  # PyG's download would delete raw/ to fetch it
    with pytest.raises(MissingDataError, match=r"(?s)raw/val\.index.*would replace the raw folder"):
        make("zinc", tmp_path, download=True).setup()
    assert (tmp_path / "zinc" / "raw" / "train.pickle").is_file()


@pytest.mark.parametrize("name,module", [("zinc", "zinc"), ("peptides_func", "lrgb")])
def test_a_failed_download_is_the_same_clear_error_and_leaves_nothing_behind(tmp_path, monkeypatch, name, module):
    def offline(url, folder, *args, **kwargs):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / url.rpartition("/")[2].split("?")[0]).write_bytes(b"torn")  # what a cut download leaves
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(f"torch_geometric.datasets.{module}.download_url", offline)
    root = tmp_path / "data" / ("zinc" if name == "zinc" else "lrgb")
    with pytest.raises(MissingDataError, match=r"(?s)https://.*download failed: URLError.*no network"):
        make(name, tmp_path / "data", download=True).setup()
    assert not root.exists(), "a folder the failed download created is removed"
    root.mkdir(parents=True)
    with pytest.raises(MissingDataError):
        make(name, tmp_path / "data", download=True).setup()
    assert root.is_dir() and not list(root.glob("*.zip")), "an existing folder stays, without the torn archive"


# -- the metrics, the loss and the monitor --------------------------------------------------------
class Pooled(torch.nn.Module):
    num_features = 3


def test_mae_is_the_mean_absolute_error_and_its_l1_loss():
    task = GraphTask(Pooled(), num_classes=2, level="graph", metric="mae")
    pred = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    target = torch.tensor([[1.5, 2.0], [1.0, 1.0], [2.0, 0.0]])
    loss, preds, truth = task.loss(pred, target, "train")
    expected = (pred - target).abs().mean()  # (0.5 + 0 + 1 + 2 + 1 + 0.5) / 6
    assert loss.item() == pytest.approx(expected.item()) == pytest.approx(5 / 6)
    metric = task.metrics["val_metrics"]["val/mae"]
    metric.update(preds, truth)
    assert metric.compute().item() == pytest.approx(5 / 6)
    assert task.score_name == "mae"


def test_average_precision_is_the_macro_mean_over_labels_with_a_bce_loss():
    from sklearn.metrics import average_precision_score

    task = GraphTask(Pooled(), num_classes=3, level="graph", metric="average_precision")
    logits = torch.tensor([[2.0, -1.0, 0.5], [-1.0, 1.0, 0.0], [0.5, 0.2, -2.0], [-2.0, -0.5, 1.5]])
    target = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 1, 0], [1, 0, 1]])
    loss, probs, truth = task.loss(logits, target, "train")
    assert loss.item() == pytest.approx(torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target.float()).item())
    metric = task.metrics["test_metrics"]["test/ap"]
    metric.update(probs, truth)
    assert metric.compute().item() == pytest.approx(average_precision_score(target.numpy(), probs.numpy(),
                                                                             average="macro"))


def test_class_weights_are_refused_for_regression():
    with pytest.raises(Exception, match="single-label classes"):
        GraphTask(Pooled(), num_classes=1, level="graph", metric="mae", class_weights="balanced")


@pytest.mark.parametrize("data,mode", [("zinc", "min"), ("peptides_struct", "min"), ("peptides_func", "max"),
                                       ("mutag", "max")])
def test_the_data_metric_sets_the_monitor_direction(tmp_path, data, mode):
    cfg = compose_config("task=graph", f"data={data}", f"paths.data_dir={tmp_path}")
    assert (cfg.task.monitor, cfg.task.mode) == ("val/score", "max")  # the family's default, before the data
    assert GraphTask.resolve_monitor(cfg, build_datamodule(cfg)) == ("val/score", mode)
    cfg.task.monitor = "val/loss"
    assert GraphTask.resolve_monitor(cfg, build_datamodule(cfg)) == ("val/loss", "max"), "only the headline"


# -- training: the real pipeline and one step per kind --------------------------------------------
def test_gine_trains_on_zinc_picks_the_lowest_val_mae_and_tests_mae(tmp_path):
    write_zinc(tmp_path / "data")
    cfg = compose_config("task=graph", "data=zinc", "model=gine", "model.hidden=16", "model.num_layers=2",
                         "data.batch_size=4", "data.rw_se_dim=3", "task.pooling=sum", "trainer.max_epochs=2",
                         f"paths.data_dir={tmp_path / 'data'}", "run_id=zinc", log_dir=tmp_path / "logs")
    result = pipeline.train(cfg)
    m = result.test_metrics
    assert {"test/mae", "test/score", "test/loss"} <= set(m) and m["test/score"] == m["test/mae"] > 0
    saved = OmegaConf.load(result.run_dir / "config.yaml")
    assert (saved.task.monitor, saved.task.mode) == ("val/score", "min")
    assert result.best_ckpt and result.monitor_value is not None
    checkpoint = next(c for c in build_callbacks(cfg, tmp_path / "again") if isinstance(c, ModelCheckpoint))
    assert (checkpoint.monitor, checkpoint.mode) == ("val/score", "min"), "the run's checkpoint keeps the lowest"


@pytest.mark.parametrize("name,model,metric", [("peptides_func", "gcn", "ap"), ("peptides_struct", "gps", "mae"),
                                               ("peptides_func", "gine", "ap")])
def test_a_graph_model_takes_a_training_step_on_peptides(tmp_path, name, model, metric):
    write_peptides(tmp_path, name.replace("_", "-"))
    cfg = compose_config("task=graph", f"data={name}", f"model={model}", "model.hidden=16", "model.num_layers=2",
                         "data.batch_size=6", "data.lap_pe_dim=2", f"paths.data_dir={tmp_path}")
    dm = build_datamodule(cfg)
    module = build_task(cfg, dm, config_dict(cfg))
    dm.setup()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    batch = next(iter(dm.train_dataloader()))
    before = [p.detach().clone() for p in module.parameters()]
    loss = module.step(batch, "train")
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and any(not torch.equal(a, p) for a, p in zip(before, module.parameters()))
    module.eval()
    with torch.no_grad():
        module.step(next(iter(dm.val_dataloader())), "val")
    value = module.metrics["val_metrics"][f"val/{metric}"].compute()
    assert torch.isfinite(value) and (0 <= value <= 1 if metric == "ap" else value > 0)


# -- the presets and the paper tables -------------------------------------------------------------
@pytest.mark.parametrize("preset,data,low,high", [("zinc_gps", "zinc", 4.0e5, 4.5e5),
                                                  ("zinc_gine", "zinc", 4.0e5, 4.5e5),
                                                  ("peptides_gcn", "peptides_func", 4.0e5, 5.5e5),
                                                  ("peptides_gine", "peptides_func", 4.0e5, 5.5e5),
                                                  ("peptides_gps", "peptides_func", 3.5e5, 5.5e5),
                                                  ("peptides_gps", "peptides_struct", 3.5e5, 5.5e5)])
def test_presets_compose_and_keep_the_papers_parameter_budget(tmp_path, preset, data, low, high):
    cfg = compose_config(f"experiment={preset}", f"data={data}", f"paths.data_dir={tmp_path}")
    dm = build_datamodule(cfg)
    module = build_task(cfg, dm, config_dict(cfg))
    params = sum(p.numel() for p in module.parameters())
    assert low < params < high, f"{preset}: {params} parameters"


@pytest.mark.parametrize("table,data,metric", [("zinc", {"zinc"}, "test/mae"),
                                               ("lrgb_peptides", {"peptides_func", "peptides_struct"}, None)])
def test_the_paper_tables_load_and_every_row_composes(table, data, metric):
    t = load_table(table)
    assert t.rows and t.repeat_key == "seed" and len(t.repeat_values) >= 4
    seen = set()
    for row in t.rows:
        cfg = expected_config(t, row, t.repeat_values[0], [])
        seen.add(cfg["data"]["name"])
        assert cfg["task"]["name"] == "graph" and row.paper and set(row.paper) <= set(t.metrics), row.name
        if metric:
            assert set(row.paper) == {metric}
    assert seen == data
