"""The contrastive family beyond images: graph, series and text views, each checked against its
definition on small hand-made input, then one short real run per modality through the pipeline."""
from __future__ import annotations

import math
import os

import pytest
import torch
from omegaconf import OmegaConf
from torch_geometric.data import Batch, Data

from labformer import pipeline, registry
from labformer.data.contrastive.views.graph import GraphViews, drop_edges, mask_columns
from labformer.data.contrastive.views.series import SeriesViews, crop_resample
from labformer.data.contrastive.views.text import TextViews, crop_tokens, mask_tokens
from labformer.errors import UserError
from labformer.utils.checkpoint_io import CONFIG_KEY

from conftest import compose_config, require_data

DATA_DIR = os.environ.get("LABFORMER_DATA_DIR", "data")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared CPU: one thread is fastest
    yield
    torch.set_num_threads(before)


def ring(n: int, edge_dim: int = 3) -> Data:
    """A ring of n nodes, both directions stored, with edge_attr that names its edge: (u, v, u*n+v)."""
    u = torch.arange(n)
    v = (u + 1) % n
    edge_index = torch.cat([torch.stack([u, v]), torch.stack([v, u])], 1)
    attr = torch.stack([edge_index[0], edge_index[1], edge_index[0] * n + edge_index[1]], 1).float()
    return Data(x=torch.ones(n, 5), edge_index=edge_index, edge_attr=attr[:, :edge_dim], y=torch.tensor([0]))


# -- graph ------------------------------------------------------------------------------------
def test_edge_drop_removes_about_the_share_and_keeps_both_directions_together():
    data = ring(2000)
    keep = drop_edges(data.edge_index, 0.3, 2000, torch.Generator().manual_seed(0))
    assert abs((1 - keep.float().mean().item()) - 0.3) < 0.03
    kept = {tuple(e) for e in data.edge_index[:, keep].T.tolist()}
    assert all((v, u) in kept for u, v in kept)  # an undirected edge goes as a whole
    assert drop_edges(data.edge_index, 0.0, 2000).all()


def test_graph_view_keeps_edge_attr_aligned_and_the_batch_splittable():
    graphs = [ring(40), ring(60), ring(50)]
    clean = Batch.from_data_list(graphs)
    view = GraphViews(edge_drop=0.5, feature_mask=0.0)(clean, torch.Generator().manual_seed(1))
    assert 0.3 < view.num_edges / clean.num_edges < 0.7
    assert clean.num_edges == 300 and clean.x.shape == view.x.shape  # the clean batch is untouched
    for g, (orig, part) in enumerate(zip(graphs, view.to_data_list())):
        n = orig.num_nodes
        u, v = part.edge_index  # local ids again: the per-graph slices were updated
        assert part.edge_attr.shape[0] == part.num_edges > 0
        assert torch.equal(part.edge_attr[:, 2], (u * n + v).float()), f"graph {g}: edge_attr out of line"


def test_feature_mask_zeroes_whole_columns_per_graph():
    clean = Batch.from_data_list([ring(6), ring(9), ring(4)])
    view = GraphViews(edge_drop=0.0, feature_mask=0.4)(clean, torch.Generator().manual_seed(2))
    assert torch.equal(view.edge_index, clean.edge_index) and clean.x.eq(1).all()
    for g in range(3):
        x = view.x[view.batch == g]
        zero = (x == 0).all(0)
        assert int(zero.sum()) == 2  # round(0.4 * 5) columns
        assert x[:, ~zero].eq(1).all()  # the other columns untouched: whole columns, not entries
    x = torch.randn(10, 8)
    assert torch.equal(mask_columns(x, torch.zeros(10, dtype=torch.long), 1, 0.0), x)


def test_graph_adapter_refuses_node_level_data_and_foreign_keys():
    with pytest.raises(UserError, match="graph-level datasets.*mutag"):
        registry.create("contrastive", "graph", kind="views", base=registry.create("graph", "cora", kind="dataset"))
    mutag = registry.create("graph", "mutag", kind="dataset")
    with pytest.raises(UserError, match=r"(?s)task.views.graph.blur_p.*edge_drop, feature_mask"):
        registry.create("contrastive", "graph", kind="views", base=mutag, blur_p=0.5)


def test_graph_items_carry_the_base_encodings(tmp_path):
    require_data("mutag/MUTAG_A.txt")
    mutag = registry.create("graph", "mutag", kind="dataset", data_dir=DATA_DIR, rw_se_dim=3,
                            cache_dir=str(tmp_path))
    adapter = registry.create("contrastive", "graph", kind="views", base=mutag, edge_drop=0.5)
    batch = adapter.dataset("val", clean=True, seed=0).__getitems__(list(range(4)))
    for graphs in (batch["x"], *batch["views"]):
        assert graphs.rw_se.shape == (graphs.num_nodes, 3)
    assert batch["y"].tolist() == adapter.split("val")[1][:4].tolist()

# -- time series ------------------------------------------------------------------------------
def test_jitter_and_scaling_have_the_asked_statistics():
    g = torch.Generator().manual_seed(0)
    noise = SeriesViews(jitter=0.2, scaling=0.0, crop=1.0)(torch.zeros(64, 50, 4), g)
    assert abs(noise.mean().item()) < 0.01 and noise.std().item() == pytest.approx(0.2, rel=0.03)
    scaled = SeriesViews(jitter=0.0, scaling=0.3, crop=1.0)(torch.ones(500, 16, 4), g)
    factors = scaled[:, 0, :]
    assert torch.equal(scaled, factors[:, None, :].expand_as(scaled))  # one factor per item and channel
    assert factors.mean().item() == pytest.approx(1.0, abs=0.03)
    assert factors.std().item() == pytest.approx(0.3, rel=0.06)


def test_crop_and_resample_of_a_ramp_stays_a_ramp():
    length = 32
    ramp = (3.0 * torch.arange(length) - 5).view(1, length, 1).repeat(64, 1, 2)
    views = SeriesViews(jitter=0.0, scaling=0.0, crop=0.4)(ramp, torch.Generator().manual_seed(3))
    steps = views.diff(dim=1)
    assert steps.diff(dim=1).abs().max() < 1e-4  # still linear
    slope = steps[:, 0, 0]
    assert (slope >= 3.0 * 0.4 - 1e-4).all() and (slope <= 3.0 + 1e-4).all()  # a share in [0.4, 1] of the span
    assert views.min() >= ramp.min() - 1e-4 and views.max() <= ramp.max() + 1e-4  # inside the original window
    half = crop_resample(ramp[:1], torch.tensor([0.5]), torch.tensor([1.0]))[0, :, 0]
    assert half[-1].item() == pytest.approx(ramp[0, -1, 0].item()) and half[1] - half[0] == pytest.approx(1.5)


def test_series_windows_match_the_base_and_eval_views_repeat():
    base = registry.create("timeseries", "synthetic_seasonal", kind="dataset", length=300, lookback=16, horizon=4)
    adapter = registry.create("contrastive", "timeseries", kind="views", base=base)
    val = adapter.dataset("val", clean=True, seed=0)
    first, again = val.__getitems__([3, 4, 5]), val.__getitems__([3, 4, 5])
    assert torch.equal(first["x"][1], base.sets["val"][4][0]) and first["y"].eq(-1).all() and not adapter.labelled
    assert all(torch.equal(a, b) for a, b in zip(first["views"], again["views"]))  # seeded: metrics repeat
    assert not torch.equal(*first["views"])  # two different views
    train = adapter.dataset("train", clean=False, seed=None)
    assert "x" not in train.__getitems__([0]) and len(train) == len(base.sets["train"])

# -- text -------------------------------------------------------------------------------------
def test_token_masking_replaces_exactly_the_share():
    tokens = torch.randint(1, 50, (200, 40))
    masked = mask_tokens(tokens, 0.25, 50, mask_token=0, generator=torch.Generator().manual_seed(0))
    changed = masked != tokens
    assert changed.sum(1).eq(10).all() and masked[changed].eq(0).all()
    random = TextViews(vocab_size=1000, mask=0.25, crop=1.0)(tokens, torch.Generator().manual_seed(1))
    share = (random != tokens).float().mean().item()  # a random id equals the old one 1 time in 1000
    assert 0.24 <= share <= 0.25 and random.max() < 1000


def test_token_crop_keeps_a_contiguous_span_at_the_front_then_pads():
    tokens = torch.arange(1, 21).repeat(300, 1)  # every row 1..20: a kept span is consecutive numbers
    views = TextViews(vocab_size=32, mask=0.0, crop=0.3)(tokens, torch.Generator().manual_seed(2))
    lengths = views.ne(0).sum(1)
    assert lengths.min() >= 6 and lengths.max() <= 20 and len(lengths.unique()) > 5
    for row, n in zip(views, lengths):
        assert row[n:].eq(0).all() and (row[:n].diff() == 1).all()
    assert views[:, 0].min() == 1 and views[:, 0].max() > 10  # starts spread over the sequence
    whole = crop_tokens(tokens[:1], torch.tensor([1.0]), torch.tensor([0.7]), pad_token=0)
    assert torch.equal(whole, tokens[:1])


# -- one short run per modality through the real pipeline -----------------------------------------
RUN = ["task=contrastive", "objective=simsiam", "objective.proj_dim=32", "objective.pred_hidden=8",
       "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
       "trainer.limit_test_batches=2", "logger=csv", "callbacks.progress_bar=none"]


def run(tmp_path, *overrides: str) -> dict[str, float]:
    result = pipeline.train(compose_config(*RUN, *overrides, log_dir=tmp_path))
    m = result.test_metrics
    assert math.isfinite(m["test/loss"]) and math.isfinite(m["test/embedding_std"]), m
    return m


def test_graph_encoder_trains_on_mutag(tmp_path):
    require_data("mutag/MUTAG_A.txt")
    m = run(tmp_path, "data=mutag", "model=gine", "model.hidden=16", "model.num_layers=2", "data.batch_size=16",
            "task.views.graph.edge_drop=0.3")
    assert 0.0 <= m["test/knn_acc"] <= 1.0 and 0.0 <= m["test/probe_acc"] <= 1.0


def test_series_encoder_trains_on_the_seasonal_series(tmp_path):
    # No labels: the run falls back to val/loss as its monitor (val/knn_acc is never logged), and what
    # it records - config.yaml and the checkpoints' config - says so.
    m = run(tmp_path, "data=synthetic_seasonal", "model=dlinear", "data.length=800", "data.lookback=32",
            "data.horizon=8", "data.batch_size=32", "run_id=series")
    assert "test/knn_acc" not in m
    run_dir = tmp_path / "runs" / "series"
    recorded = OmegaConf.load(run_dir / "config.yaml").task
    stored = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)[CONFIG_KEY]["config"]["task"]
    assert (recorded.monitor, recorded.mode) == (stored["monitor"], stored["mode"]) == ("val/loss", "min")


def test_text_encoder_trains_on_labelled_sequences(tmp_path):
    m = run(tmp_path, "data=markov_classes", "model=gpt", "model.depth=1", "model.dim=32", "model.num_heads=2",
            "data.context=32", "data.train_size=128", "data.eval_size=64")
    assert 0.0 <= m["test/knn_acc"] <= 1.0
