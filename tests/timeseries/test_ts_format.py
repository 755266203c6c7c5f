"""The `.ts` reader (UEA & UCR archive, sktime/aeon format) and the `ucr` dataset reading a .ts pair: files
written here in the archive's format, univariate and multivariate, parsed, loaded, trained a step."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from labformer.builders import build_datamodule, build_task
from labformer.data.files import MissingDataError
from labformer.data.timeseries.ts_format import TsFormatError, read_ts, ts_shape
from labformer.errors import UserError
from labformer.registry import create

from conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS = ("Standing", "Running", "Walking")
# A header as the archive writes it, with comments and the tags in mixed case.
HEADER = """# Made up for the tests, in the layout of BasicMotions_TRAIN.ts
#   (timeseriesclassification.com)
@problemName {name}
@TIMESTAMPS false
@missing false
@univariate {univariate}
{dimensions}@equalLength true
@seriesLength {length}
@ClassLabel true {labels}
@DATA
"""


def ts_text(name: str, rows: list[tuple[str, np.ndarray]], header_labels=LABELS) -> str:
    """rows: (label, values [C, L]) -> the file's text: dimensions split by ':', values by ','."""
    channels, length = rows[0][1].shape
    dims = f"@dimensions {channels}\n" if channels > 1 else ""
    head = HEADER.format(name=name, univariate=str(channels == 1).lower(), dimensions=dims, length=length,
                         labels=" ".join(header_labels))
    lines = [":".join(",".join(f"{v:.6g}" for v in dim) for dim in values) + f":{label}" for label, values in rows]
    return head + "\n".join(lines[:2]) + "\n# a comment between series\n\n" + "\n".join(lines[2:]) + "\n"


def write_pair(root, name: str, channels: int, n_train: int = 24, n_test: int = 9, length: int = 20):
    """<root>/ucr/<name>/<name>_TRAIN.ts and _TEST.ts; class k has mean k in channel 0; returns the rows."""
    rng = np.random.RandomState(channels)
    out = {}
    for split, n in (("TRAIN", n_train), ("TEST", n_test)):
        rows = [(LABELS[i % 3], rng.normal(size=(channels, length)) + np.eye(channels, 1) * (i % 3))
                for i in range(n)]
        folder = root / "ucr" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}_{split}.ts").write_text(ts_text(name, rows))
        out[split] = rows
    return out


def test_univariate_and_multivariate_files_parse_to_series_by_channel(tmp_path):
    uni = write_pair(tmp_path, "Uni", channels=1)
    multi = write_pair(tmp_path, "Multi", channels=3)
    labels, x = read_ts(tmp_path / "ucr" / "Uni" / "Uni_TRAIN.ts")
    assert x.shape == (24, 20, 1) and labels == [label for label, _ in uni["TRAIN"]]
    np.testing.assert_allclose(x[5, :, 0], uni["TRAIN"][5][1][0], rtol=1e-5)
    labels, x = read_ts(tmp_path / "ucr" / "Multi" / "Multi_TEST.ts")
    assert x.shape == (9, 20, 3) and labels[:4] == ["Standing", "Running", "Walking", "Standing"]
    np.testing.assert_allclose(x[4], multi["TEST"][4][1].T, rtol=1e-5)  # dimension d is channel d
    assert ts_shape(tmp_path / "ucr" / "Multi" / "Multi_TRAIN.ts") == (20, 3)


def test_the_ucr_dataset_reads_a_ts_pair_with_its_channels_and_string_labels(tmp_path):
    write_pair(tmp_path, "Multi", channels=3)
    dm = create("timeseries", "ucr", kind="dataset", dataset="Multi", data_dir=str(tmp_path), val_fraction=0.25)
    assert (dm.lookback, dm.channels, dm.num_classes) == (20, 3, 3)
    assert dm.files["train"].name == "Multi_TRAIN.ts"
    dm.setup()
    assert {k: len(v) for k, v in dm.sets.items()} == {"train": 18, "val": 6, "test": 9}
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (9, 20, 3) and x.dtype == torch.float32
    assert y.tolist() == [1, 0, 2] * 3  # Standing, Running, Walking as sorted names: 1, 0, 2; test order kept
    # z-normalised per series and channel
    torch.testing.assert_close(x.mean(1), torch.zeros(9, 3), atol=1e-5, rtol=0)
    assert "3 channel(s), 3 classes" in dm.describe()


@pytest.mark.parametrize("channels", [1, 3])
def test_a_model_trains_a_step_on_a_ts_dataset(tmp_path, channels):
    write_pair(tmp_path, "Tiny", channels=channels)
    cfg = compose_config("task=timeseries", "data=ucr", "data.dataset=Tiny", f"paths.data_dir={tmp_path}",
                         "model=lmuformer", "model.dim=16", "model.ffn_dim=16", "data.batch_size=8",
                         log_dir=tmp_path / "logs")
    dm = build_datamodule(cfg)
    module = build_task(cfg, dm, {})
    assert module.head.in_features == dm.horizon * channels and module.head.out_features == 3
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 20, channels)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    loss = module.criterion(module(x), y)
    loss.backward()
    before = module.head.weight.detach().clone()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before, module.head.weight)


def test_absent_files_name_both_pairs_and_the_archive_urls(tmp_path):
    with pytest.raises(MissingDataError) as e:
        create("timeseries", "ucr", kind="dataset", dataset="BasicMotions", data_dir=str(tmp_path))
    msg = str(e.value)
    folder = str(tmp_path / "ucr" / "BasicMotions")
    assert f"{folder}/BasicMotions_TRAIN.tsv" in msg and f"{folder}/BasicMotions_TEST.tsv" in msg
    assert "BasicMotions_TRAIN.ts " in msg and "BasicMotions_TEST.ts " in msg
    assert "https://www.timeseriesclassification.com" in msg
    # only one of the .ts pair: the pair is incomplete, the error still names both
    write_pair(tmp_path, "Half", channels=2)
    (tmp_path / "ucr" / "Half" / "Half_TEST.ts").unlink()
    with pytest.raises(MissingDataError, match="Half_TEST.ts"):
        create("timeseries", "ucr", kind="dataset", dataset="Half", data_dir=str(tmp_path))


def write_ts(tmp_path, body: str, header: str = "@problemName X\n@univariate false\n@dimensions 2\n"
             "@classLabel true a b\n@data\n"):
    path = tmp_path / "X_TRAIN.ts"
    path.write_text(header + body)
    return path


@pytest.mark.parametrize("body, line, message", [
    ("1,2,3:4,5,6:a\n1,2,3:4,x,6:b\n", 7, "dimension 2: 'x' is not a number"),
    ("1,2,3:4,5,6:a\n\n1,2,3:4,5,6:c\n", 8, "class label 'c' is not one of"),
    ("1,2,3:4,5,6\n", 6, "class label '4,5,6' is not one of"),  # the label forgotten
    ("1,2,3:a\n", 6, "1 dimension(s), but the header says 2"),
    ("1,2,3:4,5,6:a\n# fine\n1,2,3,4:4,5,6,7:b\n", 8, "a series of length 4, the first one has 3"),
    ("1,2,3:4,?,6:a\n", 6, "missing values ('?')"),
    ("1,2,3:4,5:a\n", 6, "dimensions of different lengths [2, 3]"),
])
def test_malformed_lines_name_the_file_and_the_line(tmp_path, body, line, message):
    path = write_ts(tmp_path, body)
    with pytest.raises(TsFormatError) as e:
        read_ts(path)
    assert str(e.value).startswith(f"{path}:{line}: ") and message in str(e.value), str(e.value)


def test_unequal_lengths_and_missing_values_say_what_to_do(tmp_path):
    with pytest.raises(UserError, match=r"equal-length series without missing values. Fix: resample or pad"):
        read_ts(write_ts(tmp_path, "1,2,3:4,5,?:a\n"))
    with pytest.raises(UserError, match=r"X_TRAIN.ts:7: a series of length 2, .*Fix: resample or pad"):
        read_ts(write_ts(tmp_path, "1,2,3:4,5,6:a\n1,2:4,5:b\n"))


@pytest.mark.parametrize("header, line, message", [
    ("@problemName X\n@classLabel false\n@data\n", 3, "no class labels"),
    ("@problemName X\n@timeStamps true\n@classLabel true a b\n@data\n", 4, "@timeStamps true"),
    ("@problemName X\n@equalLength maybe\n", 2, "@equalLength takes true or false"),
    ("@problemName X\n@dimensions two\n", 2, "@dimensions takes a positive integer"),
    ("@problemName X\n@classLabel true\n", 2, "lists no class labels"),
    ("@problemName X\n1,2:a\n", 2, "a series before @data"),
    ("# only a comment\n@problemName X\n@classLabel true a\n", 3, "no @data line"),
])
def test_malformed_headers_name_the_file_and_the_line(tmp_path, header, line, message):
    path = write_ts(tmp_path, "", header=header)
    with pytest.raises(TsFormatError) as e:
        read_ts(path)
    assert str(e.value).startswith(f"{path}:{line}: ") and message in str(e.value), str(e.value)
    path.write_text("")
    with pytest.raises(TsFormatError, match="is empty"):
        read_ts(path)
