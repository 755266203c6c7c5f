"""Forecasting data: windows, the train-only scaler, ETT/CSV splits and readers, embedded series."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from labformer.data.files import MissingDataError
from labformer.data.timeseries.base import WindowDataset, split_borders
from labformer.data.timeseries.ett import ETT_COLUMNS
from labformer.errors import UserError
from labformer.registry import create, entries

DATA_DIR = Path(os.environ.get("LABFORMER_DATA_DIR", "data"))
ETTH1 = DATA_DIR / "ett" / "ETTh1.csv"


def data(name: str, **kwargs):
    return create("timeseries", name, kind="dataset", **kwargs)


def write_csv(path: Path, rows: int, columns=("a", "b", "OT"), seed: int = 0) -> np.ndarray:
    values = np.random.RandomState(seed).normal(size=(rows, len(columns))) * [1, 10, 100] + [0, 5, -3]
    lines = ["date," + ",".join(columns)]
    lines += [f"2020-01-01 {i:05d}," + ",".join(f"{v:.6f}" for v in row) for i, row in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return np.round(values, 6)


@pytest.mark.parametrize("rows, lookback, horizon", [(100, 10, 5), (50, 24, 24), (30, 20, 11)])
def test_window_count_is_rows_minus_lookback_minus_horizon_plus_one(rows, lookback, horizon):
    series = np.arange(rows * 2, dtype=np.float32).reshape(rows, 2)
    ds = WindowDataset(series, lookback, horizon)
    assert len(ds) == max(0, rows - lookback - horizon + 1)
    if len(ds):
        x, y = ds[len(ds) - 1]
        assert x.shape == (lookback, 2) and y.shape == (horizon, 2)
        assert y[-1, 0] == series[-1, 0] and y[0, 0] == x[-1, 0] + 2  # the horizon follows the lookback


def test_ett_split_is_the_published_one():
    b = split_borders(17420, 96, 8640, 2880, 2880)
    assert b == {"train": (0, 8640), "val": (8640 - 96, 11520), "test": (11520 - 96, 14400)}


def test_scaler_never_sees_validation_or_test_rows(tmp_path):
    path = tmp_path / "s.csv"
    values = write_csv(path, 400)
    dm = data("csv_series", path=str(path), data_dir=str(tmp_path), lookback=16, horizon=8)
    dm.setup()
    train_end = dm.split_rows["train"][1]
    assert train_end == 280  # 70%
    np.testing.assert_allclose(dm.scaler.mean, values[:train_end].mean(0), rtol=1e-9)
    np.testing.assert_allclose(dm.scaler.std, values[:train_end].std(0), rtol=1e-9)
    # Changing every non-training row leaves the scaler (and the training windows) unchanged.
    values[train_end:] *= 1000
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[: train_end + 1] + [
        lines[i + 1].split(",")[0] + "," + ",".join(f"{v:.6f}" for v in values[i]) for i in range(train_end, 400)]))
    again = data("csv_series", path=str(path), data_dir=str(tmp_path), lookback=16, horizon=8)
    again.setup()
    np.testing.assert_allclose(again.scaler.mean, dm.scaler.mean)
    assert torch.equal(again.sets["train"][0][0], dm.sets["train"][0][0])


def test_csv_splits_overlap_by_the_lookback_and_count_windows(tmp_path):
    path = tmp_path / "s.csv"
    write_csv(path, 1000)
    dm = data("csv_series", path=str(path), data_dir=str(tmp_path), lookback=24, horizon=12)
    assert dm.channels == 3  # known from the header line, before setup
    dm.setup()
    assert dm.split_rows == {"train": (0, 700), "val": (676, 800), "test": (776, 1000)}
    assert "Time-Series-Library's `custom`" in dm.protocol and "all windows" in dm.protocol
    for split, (a, b) in dm.split_rows.items():
        assert len(dm.sets[split]) == (b - a) - 24 - 12 + 1
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (32, 24, 3) and y.shape == (32, 12, 3)


@pytest.mark.parametrize("rows, lookback", [(1003, 36), (17544, 96), (969, 104)])  # odd lengths, ILI's L=36/104
def test_csv_split_is_time_series_library_custom_exactly(tmp_path, rows, lookback):
    # Time-Series-Library's Dataset_Custom: num_train = int(n * 0.7), num_test = int(n * 0.2), the rest val;
    # border1s = [0, num_train - L, n - num_test - L], border2s = [num_train, num_train + num_vali, n].
    path = tmp_path / "s.csv"
    write_csv(path, rows)
    dm = data("csv_series", path=str(path), data_dir=str(tmp_path), lookback=lookback, horizon=24)
    dm.setup()
    n_train, n_test = int(rows * 0.7), int(rows * 0.2)
    n_val = rows - n_train - n_test
    starts, ends = [0, n_train - lookback, rows - n_test - lookback], [n_train, n_train + n_val, rows]
    assert [dm.split_rows[s] for s in ("train", "val", "test")] == list(zip(starts, ends))


def test_univariate_mode_keeps_the_target_only(tmp_path):
    path = tmp_path / "s.csv"
    values = write_csv(path, 300)
    dm = data("csv_series", path=str(path), data_dir=str(tmp_path), lookback=8, horizon=4,
                features="S", target="OT")
    assert dm.channels == 1
    dm.setup()
    x, _ = dm.sets["train"][0]
    expected = (values[:8, 2] - values[:210, 2].mean()) / values[:210, 2].std()
    np.testing.assert_allclose(x[:, 0].numpy(), expected, rtol=1e-5)


def test_weather_header_with_latin1_units_reads(tmp_path):
    # Time-Series-Library's weather.csv: 21 variables, units in Latin-1 bytes (m\xb2, \xb5mol), target OT.
    names = ["p (mbar)", "SWDR (W/m\xb2)", "PAR (\xb5mol/m\xb2/s)", "OT"]
    rows = [f"2020-01-01 00:{i:02d}:00,{1008 + i * 0.1:.2f},{i % 3}.0,{i * 2}.5,{428 - i}.1" for i in range(40)]
    path = tmp_path / "weather.csv"
    path.write_bytes(("date," + ",".join(names) + "\n" + "\n".join(rows) + "\n").encode("latin-1"))
    dm = data("csv_series", path="weather.csv", data_dir=str(tmp_path), lookback=8, horizon=4)
    assert dm.channels == 4
    dm.setup()
    assert len(dm.sets["train"]) == 28 - 8 - 4 + 1
    only = data("csv_series", path="weather.csv", data_dir=str(tmp_path), lookback=8, horizon=4,
                features="M", columns=["PAR (\xb5mol/m\xb2/s)", "OT"])
    only.setup()
    assert only.sets["train"][0][0].shape == (8, 2)


def test_test_loader_keeps_every_window_unless_asked(tmp_path):
    path = tmp_path / "s.csv"
    write_csv(path, 500)
    kw = dict(path=str(path), data_dir=str(tmp_path), lookback=10, horizon=5, batch_size=32)
    honest = data("csv_series", **kw)
    published = data("csv_series", test_drop_last=True, **kw)
    n = len(WindowDataset(np.zeros((110, 1)), 10, 5))  # test rows: 100 + lookback
    assert sum(len(x) for x, _ in honest.test_dataloader()) == n == 96
    assert sum(len(x) for x, _ in published.test_dataloader()) == 96 // 32 * 32
    assert "all windows" in honest.describe() and "drop_last" in published.describe()


def test_contract_is_known_before_any_file_is_read(tmp_path):
    for e in entries("dataset", task="timeseries"):
        if e.name == "csv_series":
            continue
        dm = data(e.name, data_dir=str(tmp_path / "nowhere"), download=False) \
            if not e.meta.get("embedded") else data(e.name, data_dir=str(tmp_path))
        assert dm.lookback >= 1 and dm.horizon >= 1 and dm.channels >= 1 and not dm.sets


def test_missing_ett_file_names_file_folder_url_and_checksum(tmp_path):
    dm = data("ettm2", data_dir=str(tmp_path), download=False)
    with pytest.raises(MissingDataError) as e:
        dm.setup()
    msg = str(e.value)
    assert "ETTm2.csv" in msg and str(tmp_path / "ett") in msg and "ETDataset" in msg
    assert "db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd" in msg


def test_bad_settings_name_the_key(tmp_path):
    with pytest.raises(UserError, match="data.features"):
        data("etth1", data_dir=str(tmp_path), features="X")
    with pytest.raises(UserError, match="data.path"):
        data("csv_series", data_dir=str(tmp_path))
    with pytest.raises(UserError, match="data.lookback"):
        data("synthetic_seasonal", data_dir=str(tmp_path), lookback=0)


def test_real_etth1_parses_with_the_standard_split():
    if not ETTH1.is_file():
        pytest.skip(f"ETTh1.csv not found in {ETTH1.parent} (set LABFORMER_DATA_DIR to a folder holding ett/ETTh1.csv)")
    dm = data("etth1", data_dir=str(DATA_DIR), lookback=96, horizon=96, download=False)
    dm.setup()
    assert dm.channels == len(ETT_COLUMNS) == 7
    assert {k: len(v) for k, v in dm.sets.items()} == {"train": 8449, "val": 2785, "test": 2785}
    assert dm.scaler.fitted_rows == 8640
    train = dm.sets["train"].series
    assert abs(float(train.mean())) < 1e-5 and abs(float(train.std(0).mean()) - 1) < 1e-3
    assert abs(float(dm.scaler.mean[-1]) - 17.13) < 0.05  # OT's training mean, in degrees
    uni = data("etth1", data_dir=str(DATA_DIR), features="S", download=False)
    uni.setup()
    assert uni.channels == 1 and uni.sets["test"][0][0].shape == (96, 1)


def test_embedded_series_are_deterministic_and_scaled():
    a = data("synthetic_seasonal", length=1200, lookback=48, horizon=24)
    b = data("synthetic_seasonal", length=1200, lookback=48, horizon=24)
    a.setup(), b.setup()
    assert torch.equal(a.sets["test"].series, b.sets["test"].series)
    assert abs(float(a.sets["train"].series.mean())) < 1e-4
    toy = data("synthetic_linear", lookback=32, horizon=8, channels=3, num_train=64, num_val=8,
                 num_test=8)
    toy.setup()
    x, y = toy.sets["train"][:]
    assert x.shape == (64, 32, 3) and y.shape == (64, 8, 3)
    torch.testing.assert_close(y, torch.einsum("nlc,lh->nhc", x, toy.weights))  # noise 0: exactly linear
