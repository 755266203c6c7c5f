"""Series classification: the UCR reader, the embedded series_classes, and the task's classification mode."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from labformer import pipeline
from labformer.builders import build_datamodule, build_task
from labformer.errors import UserError
from labformer.registry import create

from conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = ["task=timeseries", "data=series_classes", "model.dim=32", "model.ffn_dim=32", "trainer.max_epochs=15",
         "task.plot_windows=0"]


def data(name: str, **kwargs):
    return create("timeseries", name, kind="dataset", **kwargs)


def write_ucr(folder, name, split, rows):
    """The archive's layout: <name>/<name>_<SPLIT>.tsv, tab-separated, the label first."""
    (folder / name).mkdir(parents=True, exist_ok=True)
    lines = ["\t".join([label, *(f"{v:.6f}" for v in values)]) for label, values in rows]
    (folder / name / f"{name}_{split}.tsv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def tiny_ucr(tmp_path):
    rng = np.random.RandomState(0)
    labels = ["walk", "run", "sit"]
    # 10 / 20 / 30 training series per class: stratification must keep these 1:2:3 proportions.
    train = [(lab, rng.normal(3.0, 5.0, size=12)) for lab, n in zip(labels, (10, 20, 30)) for _ in range(n)]
    test = [(lab, rng.normal(size=12)) for lab in labels for _ in range(4)]
    write_ucr(tmp_path / "ucr", "Tiny", "TRAIN", train)
    write_ucr(tmp_path / "ucr", "Tiny", "TEST", test)
    return tmp_path, train, test


def test_ucr_reader_maps_labels_keeps_splits_and_stratifies(tiny_ucr):
    root, train, test = tiny_ucr
    dm = data("ucr", dataset="Tiny", data_dir=str(root), val_fraction=0.2)
    assert (dm.lookback, dm.channels, dm.num_classes, dm.objective) == (12, 1, 3, "classification")
    dm.setup()
    assert len(dm.sets["test"]) == len(test) == 12  # TEST stays the test set, whole
    assert len(dm.sets["train"]) + len(dm.sets["val"]) == len(train)
    # sorted string labels: run=0, sit=1, walk=2; 20% of each class held out
    val_counts = torch.bincount(dm.sets["val"].tensors[1], minlength=3).tolist()
    assert val_counts == [4, 6, 2]
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (12, 12, 1) and x.dtype == torch.float32 and y.dtype == torch.long
    assert y.tolist() == [2] * 4 + [0] * 4 + [1] * 4  # test order kept, labels mapped like TRAIN's
    series = dm.sets["train"].tensors[0][..., 0].double()
    torch.testing.assert_close(series.mean(1), torch.zeros(len(series), dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(series.std(1, unbiased=False), torch.ones(len(series), dtype=torch.float64))
    raw = data("ucr", dataset="Tiny", data_dir=str(root), normalize=False)
    raw.setup()
    assert abs(float(raw.sets["train"].tensors[0].mean()) - 3.0) < 1.0  # normalize=false keeps the values
    again = data("ucr", dataset="Tiny", data_dir=str(root), val_fraction=0.2)
    again.setup()
    assert torch.equal(again.sets["val"].tensors[0], dm.sets["val"].tensors[0])  # split_seed: same split


def test_numeric_labels_sort_as_numbers(tmp_path):
    rows = [(lab, np.arange(5.0) * (i + 1)) for i, lab in enumerate(["10", "2", "-1", "2", "10", "-1"])]
    for split in ("TRAIN", "TEST"):
        write_ucr(tmp_path / "ucr", "Num", split, rows)
    dm = data("ucr", dataset="Num", data_dir=str(tmp_path), val_fraction=0.5)
    dm.setup()
    assert dm.sets["test"].tensors[1].tolist() == [2, 1, 0, 1, 2, 0]  # -1 < 2 < 10, not "-1" < "10" < "2"


def test_missing_ucr_files_name_both_files_and_the_url(tmp_path):
    dm = data("ucr", dataset="GunPoint", data_dir=str(tmp_path))  # L is known without files
    assert dm.lookback == 150
    with pytest.raises(UserError) as e:
        dm.setup()
    msg = str(e.value)
    assert "GunPoint_TRAIN.tsv" in msg and "GunPoint_TEST.tsv" in msg and str(tmp_path / "ucr" / "GunPoint") in msg
    assert "https://www.cs.ucr.edu/~eamonn/time_series_data_2018/" in msg
    with pytest.raises(UserError, match="time_series_data_2018"):
        data("ucr", dataset="NotInTheTable", data_dir=str(tmp_path))
    with pytest.raises(UserError, match="data.val_fraction"):
        data("ucr", dataset="GunPoint", data_dir=str(tmp_path), val_fraction=1.0)


def test_series_classes_is_deterministic_per_seed_and_balanced(tmp_path):
    a, b, c = (data("series_classes", data_dir=str(tmp_path), seed=s) for s in (0, 0, 1))
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.sets["train"].tensors[0], b.sets["train"].tensors[0])
    assert not torch.equal(a.sets["train"].tensors[0], c.sets["train"].tensors[0])
    for split, n in (("train", 240), ("val", 80), ("test", 80)):
        assert torch.bincount(a.sets[split].tensors[1]).tolist() == [n // 4] * 4
    x, y = next(iter(a.train_dataloader()))
    assert x.shape == (64, 128, 1) and x.dtype == torch.float32 and y.shape == (64,) and y.dtype == torch.long
    with pytest.raises(UserError, match="data.num_classes"):
        data("series_classes", data_dir=str(tmp_path), num_classes=7)


def test_short_run_classifies_above_chance_and_monitors_val_acc(tmp_path):
    result = pipeline.train(compose_config(*SMALL, "model=transformer", "model.num_heads=4", "task.lr=0.005",
                                           log_dir=tmp_path))
    cfg = (result.run_dir / "config.yaml").read_text()
    assert "monitor: val/acc" in cfg and "mode: max" in cfg
    assert result.monitor_value is not None and result.monitor_value > 0.25 + 0.15  # K=4: chance is 0.25
    assert result.test_metrics["test/acc"] > 0.25 + 0.15
    assert "test/mse" not in result.test_metrics


@pytest.mark.parametrize("model", ["transformer", "itransformer", "dlinear", "lmuformer"])
def test_every_backbone_trains_a_step_in_classification_mode(tmp_path, model):
    cfg = compose_config("task=timeseries", "data=series_classes", f"model={model}", "data.num_train=16",
                         log_dir=tmp_path)
    dm = build_datamodule(cfg)
    module = build_task(cfg, dm, {})
    assert module.objective == "classification" and module.head.out_features == 4
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    logits = module(x)
    assert logits.shape == (len(y), 4)
    loss = module.criterion(logits, y)
    loss.backward()
    before = module.head.weight.detach().clone()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before, module.head.weight)
    assert all(p.grad is not None for p in module.backbone.parameters() if p.requires_grad)


def test_a_forecast_monitor_on_classification_data_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="task.monitor=val/mae"):
        pipeline.train(compose_config("task=timeseries", "data=series_classes", "task.monitor=val/mae",
                                      log_dir=tmp_path))
