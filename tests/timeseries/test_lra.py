"""Long Range Arena data (data/timeseries/lra.py) on tiny files in the real formats: ListOps' .tsv files and a
CIFAR-10 python-pickle tarball; shapes, one-hot tokens, grayscale pixels, the split, a training step, the
missing-files errors. The table conf/reproduce/lra.yaml composes row by row in tests/test_reproduce.py."""
from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from labformer import pipeline
from labformer.builders import build_datamodule, build_task
from labformer.data.files import MissingDataError
from labformer.data.timeseries.lra import LISTOPS_TOKENS
from labformer.errors import UserError
from labformer.registry import create

from conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LISTOPS = {  # five expressions per split, LRA's format (parentheses included, dropped by the reader)
    "train": [("( ( [MAX 2 9 ] 0 ) )", 9), ("[MIN 3 ( [MED 1 5 7 ] ) ]", 3), ("4", 4),
              ("( [SM 8 5 ] )", 3), ("[MAX ( [MIN 6 2 ] ) 1 ]", 2)],
    "val": [("[MED 1 2 3 ]", 2), ("7", 7), ("[SM 9 9 ]", 8), ("[MIN 0 5 ]", 0), ("( 6 )", 6)],
    "test": [("[MAX 1 1 ]", 1), ("5", 5), ("[SM 3 3 3 ]", 9), ("[MED 4 ]", 4), ("[MIN 8 9 ]", 8)],
}
TINY = ["task=timeseries", "model=transformer", "model.dim=16", "model.ffn_dim=16", "model.depth=1",
        "model.num_heads=2", "model.use_revin=false", "trainer.max_epochs=1", "task.plot_windows=0"]


def data(name: str, **kwargs):
    return create("timeseries", name, kind="dataset", **kwargs)


@pytest.fixture
def listops_dir(tmp_path):
    folder = tmp_path / "lra_release" / "listops-1000"
    folder.mkdir(parents=True)
    for split, rows in LISTOPS.items():
        lines = ["Source\tTarget", *(f"{source}\t{target}" for source, target in rows)]
        (folder / f"basic_{split}.tsv").write_text("\n".join(lines) + "\n")
    return tmp_path


def cifar_batch(values: list[int], labels: list[int]) -> bytes:
    """A CIFAR python batch (byte-string keys, as the archive's Python 2 pickles): image i is uniform gray
    values[i] in all three planes."""
    images = np.repeat(np.asarray(values, dtype=np.uint8)[:, None], 3072, axis=1)
    return pickle.dumps({b"batch_label": b"tiny", b"labels": labels, b"data": images}, protocol=2)


@pytest.fixture
def cifar_dir(tmp_path):
    """cifar10/cifar-10-python.tar.gz with 5 training batches of 4 images and a test batch of 3; image value
    = 10 * its index in the archive (train 0..190, test 200..220), label = index % 10."""
    home = tmp_path / "cifar10"
    home.mkdir()
    with tarfile.open(home / "cifar-10-python.tar.gz", "w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for b, name in enumerate(names):
            idx = list(range(4 * b, 4 * b + (3 if name == "test_batch" else 4)))
            payload = cifar_batch([10 * i for i in idx], [i % 10 for i in idx])
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return tmp_path


def test_listops_reads_tokens_as_one_hot_channels_with_zero_padding(listops_dir):
    dm = data("lra_listops", data_dir=str(listops_dir), max_length=12, batch_size=5)
    assert (dm.lookback, dm.channels, dm.num_classes, dm.objective) == (12, 15, 10, "classification")
    dm.setup()
    assert {k: len(v) for k, v in dm.sets.items()} == {"train": 5, "val": 5, "test": 5}
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (5, 12, 15) and x.dtype == torch.float32 and y.tolist() == [2, 7, 8, 0, 6]
    # "[MED 1 2 3 ]": five tokens, then all-zero padding steps
    expected = ["[MED", "1", "2", "3", "]"]
    assert x[0, :5].argmax(1).tolist() == [LISTOPS_TOKENS.index(t) for t in expected]
    assert x[0, :5].sum(1).tolist() == [1.0] * 5 and x[0, 5:].abs().sum() == 0
    x, y = next(iter(dm.train_dataloader()))
    assert set(x.sum(2).unique().tolist()) == {0.0, 1.0}  # one-hot or padding, never anything else
    # parentheses dropped: "( ( [MAX 2 9 ] 0 ) )" is 5 tokens
    first = dm.sets["train"][0][0]
    assert first.sum() == 5 and first[:5].argmax(1).tolist() == [LISTOPS_TOKENS.index(t) for t in
                                                                  ["[MAX", "2", "9", "]", "0"]]
    assert data("lra_listops", data_dir=str(listops_dir), max_length=3).load()["train"][0].shape == (5, 3)


def test_listops_refuses_unknown_tokens_and_a_wrong_header(listops_dir):
    path = listops_dir / "lra_release" / "listops-1000" / "basic_test.tsv"
    path.write_text("Source\tTarget\n[MAX 1 x ]\t1\n")
    with pytest.raises(UserError, match=r"basic_test.tsv:2: unknown token 'x'"):
        data("lra_listops", data_dir=str(listops_dir)).setup()
    path.write_text("inputs\ttargets\n1\t1\n")
    with pytest.raises(UserError, match="Source<TAB>Target"):
        data("lra_listops", data_dir=str(listops_dir)).setup()


def test_lra_image_is_grayscale_sequences_split_as_lra(cifar_dir):
    dm = data("lra_image", data_dir=str(cifar_dir), batch_size=64)
    assert (dm.lookback, dm.channels, dm.num_classes) == (1024, 1, 10)
    dm.setup()
    sizes = {k: len(v) for k, v in dm.sets.items()}
    assert sizes == {"train": 18, "val": 2, "test": 3}  # the last 10% of the training images validate
    x, y = dm.sets["val"].tensors
    assert x.shape == (2, 1024, 1) and y.tolist() == [18 % 10, 19 % 10]
    # a uniform gray image keeps its value (the weights sum to 1), scaled to [0, 1]
    torch.testing.assert_close(x[:, :, 0], torch.tensor([[180.0], [190.0]]).expand(2, 1024) / 255)
    test_x, test_y = dm.sets["test"].tensors
    assert test_y.tolist() == [0, 1, 2] and torch.allclose(test_x[:, 0, 0], torch.tensor([200.0, 210, 220]) / 255)


def test_lra_image_grayscale_weights_match_lra():
    from labformer.data.timeseries.lra import grayscale_sequences

    image = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    image[0, 0], image[0, 1], image[0, 2] = 255, 100, 0
    expected = round(0.2989 * 255 + 0.5870 * 100) / 255
    assert grayscale_sequences(image).shape == (1, 1024)
    assert grayscale_sequences(image)[0, 0] == pytest.approx(expected)


def test_missing_files_name_the_files_the_folder_and_the_url(tmp_path):
    with pytest.raises(MissingDataError) as err:
        data("lra_listops", data_dir=str(tmp_path)).setup()
    said = str(err.value)
    assert "basic_train.tsv" in said and "basic_test.tsv" in said and str(tmp_path / "lra_release") in said
    assert "https://storage.googleapis.com/long-range-arena/lra_release.gz" in said
    with pytest.raises(MissingDataError) as err:
        data("lra_image", data_dir=str(tmp_path), download=False).setup()
    said = str(err.value)
    assert "cifar-10-python.tar.gz" in said and "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in said
    assert str(tmp_path / "cifar10") in said


def test_a_tiny_transformer_trains_on_listops_through_the_pipeline(listops_dir, tmp_path):
    result = pipeline.train(compose_config(*TINY, "data=lra_listops", "data.max_length=16", "data.batch_size=5",
                                           f"paths.data_dir={listops_dir}", log_dir=tmp_path / "logs"))
    assert "test/acc" in result.test_metrics and 0 <= result.test_metrics["test/acc"] <= 1


@pytest.mark.parametrize("attention", ["linear", "performer"])
def test_a_tiny_transformer_trains_a_step_on_lra_image(cifar_dir, tmp_path, attention):
    cfg = compose_config(*TINY, "data=lra_image", "data.batch_size=8", f"paths.data_dir={cifar_dir}",
                         f"model.attention={attention}", log_dir=tmp_path / "logs")
    dm = build_datamodule(cfg)
    module = build_task(cfg, dm, {})
    assert module.objective == "classification" and module.head.out_features == 10
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    logits = module(x)
    assert logits.shape == (8, 10)
    loss = module.criterion(logits, y)
    loss.backward()
    before = module.head.weight.detach().clone()
    torch.optim.AdamW(module.parameters(), lr=1e-3).step()
    assert torch.isfinite(loss) and not torch.equal(before, module.head.weight)


def test_listops_refuses_to_download_and_says_how_to_get_the_release(tmp_path):
    with pytest.raises(UserError, match=r"not downloaded automatically .*lra_release\.gz"):
        data("lra_listops", data_dir=str(tmp_path), download=True)
