"""The forecasting task end to end, in-process on the embedded series: train, test, protocol, plot, eval."""
from __future__ import annotations

import pytest

from labformer import pipeline

from conftest import compose_config


pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = ["task=timeseries", "data.length=1200", "data.lookback=48", "data.horizon=24", "data.batch_size=64",
         "trainer.max_epochs=2"]
SMALL_ITRANSFORMER = ["model.dim=32", "model.ffn_dim=32", "model.num_heads=4"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    return pipeline.train(compose_config(*SMALL, *SMALL_ITRANSFORMER, "run_id=ts", log_dir=logs))


def test_short_run_forecasts_better_than_the_mean(trained):
    m = trained.test_metrics
    # On this test split, forecasting the training mean (0) scores 1.65 and repeating the last value 1.21.
    assert m["test/mse"] < 1.0 and 0 < m["test/mae"] < 1.0, m
    assert m["test/windows"] == (240 + 48) - 48 - 24 + 1  # the last 20% of rows plus the lookback
    assert {"test/mse_h1", "test/mse_h24", "test/mae_h24"} <= set(m)
    assert m["test/mse_h1"] < m["test/mse_h24"]  # the near future is easier
    assert trained.monitor_value is not None


def test_run_directory_holds_the_plot_and_the_per_step_curve(trained):
    png = trained.run_dir / "forecast_test.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (trained.run_dir / "test_horizon_metrics.csv").read_text().splitlines()
    assert rows[0] == "step,mse,mae" and len(rows) == 1 + 24


def test_published_protocol_is_named_in_the_metrics(tmp_path):
    result = pipeline.train(compose_config(*SMALL, "model=dlinear", "data.test_drop_last=true", "trainer.max_epochs=1",
                                           "task.plot_windows=0", log_dir=tmp_path))
    m = result.test_metrics
    assert "test/mse" not in m and "test/mse_drop_last" in m and "test/mae_drop_last" in m
    assert m["test/windows_drop_last"] == 217 // 64 * 64


def test_eval_rebuilds_and_matches(trained):
    metrics = pipeline.evaluate(compose_config(f"ckpt_path={trained.best_ckpt}", config="eval"))
    assert metrics == pytest.approx(trained.test_metrics, rel=1e-6)


def test_sam_trains_through_the_pipeline(tmp_path):
    result = pipeline.train(compose_config(*SMALL, "model=dlinear", "task.sam_rho=0.05", "trainer.max_epochs=1",
                                           "task.plot_windows=0", log_dir=tmp_path))
    assert result.test_metrics["test/mse"] < 1.0
