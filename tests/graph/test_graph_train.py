"""The graph task through the real pipeline: compose, train, test, checkpoint, evaluate."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from labformer import pipeline, registry
from labformer.builders import build_datamodule, build_task
from labformer.errors import UserError
from labformer.tasks.graph import GraphTask, balanced_weights

from conftest import compose_config

TINY = ["task=graph", "data.train_graphs=48", "data.val_graphs=16", "data.test_graphs=16", "data.batch_size=16",
        "model.hidden=32", "model.num_layers=2", "trainer.max_epochs=3", "task.lr=3e-3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("graph")
    cfg = compose_config(*TINY, "run_id=graph", f"data.cache_dir={tmp / 'cache'}", log_dir=tmp / "logs")
    return pipeline.train(cfg), tmp


def test_exphormer_trains_on_the_embedded_default(trained):
    result, tmp = trained
    assert result.run_dir.name == "graph"
    m = result.test_metrics
    assert {"test/acc", "test/bal_acc", "test/score", "test/loss"} <= set(m)
    assert m["test/score"] == m["test/bal_acc"] and 0.0 <= m["test/score"] <= 1.0
    assert result.monitor_value is not None
    assert list((tmp / "cache").glob("expander-*.pt")), "the expander is cached beside the graphs"


def test_eval_rebuilds_and_matches(trained):
    result, _ = trained
    metrics = pipeline.evaluate(compose_config(f"ckpt_path={result.best_ckpt}", config="eval"))
    assert metrics == pytest.approx(result.test_metrics, rel=1e-5)


def test_graph_level_dataset_with_encodings(tmp_path):
    cfg = compose_config("task=graph", "data=long_range", "model=gine", "data.train_graphs=32", "data.val_graphs=8",
                         "data.test_graphs=8", "data.rw_se_dim=4", "model.hidden=16", "model.num_layers=2",
                         "trainer.max_epochs=1", f"data.cache_dir={tmp_path / 'cache'}", log_dir=tmp_path)
    result = pipeline.train(cfg)
    assert "test/acc" in result.test_metrics
    assert {p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.pt")} == {"graphs", "lap_pe", "rw_se"}


def test_gcn_as_in_its_paper_scores_classes_without_a_head(tmp_path):
    # PATTERN has 2 classes: the last convolution writes them and the task adds no layer.
    base = ["task=graph", "data=pattern", "model=gcn", "data.train_graphs=16", "data.val_graphs=8",
            "data.test_graphs=8", f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=1"]
    result = pipeline.train(compose_config(*base, "model.out_dim=2", "task.head=none", "task.optimizer=adam",
                                           "task.schedule=constant", log_dir=tmp_path))
    assert 0.0 <= result.test_metrics["test/score"] <= 1.0
    with pytest.raises(UserError, match=r"Fix: model.out_dim=2 \(gcn\) or task.head=linear"):
        pipeline.train(compose_config(*base, "task.head=none", log_dir=tmp_path))


def test_one_graph_full_batch_normalises_with_its_own_statistics_in_eval():
    # Transductive data: eval sees the training batch itself, so BatchNorm must not switch to
    # (lagging) running averages: without dropout, eval and train outputs are identical.
    torch.manual_seed(0)
    graph = Data(x=torch.randn(30, 5), edge_index=torch.randint(0, 30, (2, 90)))
    backbone = registry.create("graph", "polynormer", in_dim=5, hidden=8, heads=2)
    task = GraphTask(backbone, num_classes=3, transductive=True)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) and m.running_mean is not None for m in task.modules())
    batch = Batch.from_data_list([graph])
    train_out = task.train()(batch)
    assert torch.allclose(task.eval()(batch), train_out, atol=1e-5)
    assert "running_mean" not in " ".join(task.state_dict())


def test_balanced_class_weights_follow_the_sbm_benchmarks_loss():
    target = torch.tensor([0, 0, 0, 1, 0, 0, 1, 0, 0, 0])  # 8 of class 0, 2 of class 1, none of class 2
    assert balanced_weights(target, 3).tolist() == pytest.approx([0.2, 0.8, 0.0])
    # Weighted this way, predicting the majority everywhere no longer minimises the loss: each
    # class contributes in proportion to count x weight, equal for the two present classes.
    w = balanced_weights(target, 3)
    counts = torch.bincount(target, minlength=3).float()
    assert (counts * w)[0] == pytest.approx((counts * w)[1])


def test_unknown_class_weights_are_refused(tmp_path):
    cfg = compose_config(*TINY, "task.class_weights=inverse", f"data.cache_dir={tmp_path / 'cache'}", log_dir=tmp_path)
    with pytest.raises(UserError, match="task.class_weights=inverse is unknown; use none or balanced"):
        pipeline.train(cfg)


def test_a_dense_model_refuses_a_graph_above_its_size_limit(tmp_path):
    # Graphormer's dense attention and all-pairs distances: the DataModule refuses what it cannot take.
    cfg = compose_config("task=graph", "data=pattern", "model=graphormer", "data.train_graphs=4", "data.val_graphs=2",
                         "data.test_graphs=2", f"data.cache_dir={tmp_path / 'cache'}", log_dir=tmp_path)
    datamodule = build_datamodule(cfg)
    backbone = build_task(cfg, datamodule, {}).backbone
    assert datamodule.backbone_max_nodes == backbone.max_nodes == 256
    backbone.max_nodes = 20  # PATTERN's CPU-sized graphs have ~50 nodes
    datamodule.use_backbone(backbone)
    with pytest.raises(UserError, match=r"graph of \d+ nodes; the model takes at most 20 .*exphormer"):
        datamodule.setup()
