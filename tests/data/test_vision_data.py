"""Vision DataModules: contract before setup, splits, readers (real Fashion-MNIST, fake CIFAR), transforms."""
from __future__ import annotations

import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from labformer.data.vision.augment import RandomCropFlip
from labformer.data.vision.cifar import CIFAR10DataModule, CIFAR100DataModule, read_cifar_batch
from labformer.data.vision.digits import DigitsDataModule
from labformer.data.vision.fashion_mnist import FashionMNISTDataModule, read_idx
from labformer.data.files import MissingDataError
from labformer.errors import UserError
from labformer.registry import create, entries

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
NATURAL = {"digits": (1, 16, 10), "fashion_mnist": (1, 28, 10), "cifar10": (3, 32, 10), "cifar100": (3, 32, 100)}


def build(name: str, data_dir: Path, **kw):
    return create("vision", name, kind="dataset", data_dir=str(data_dir), **kw)


# -- contract: known after __init__, before any file is read --------------------------------
@pytest.mark.parametrize("name", sorted(NATURAL))
def test_contract_known_before_any_file_is_read(name, tmp_path):
    dm = build(name, tmp_path / "absent")
    assert (dm.in_chans, dm.img_size, dm.num_classes) == NATURAL[name]
    assert dm.name == name
    assert "not loaded" in repr(dm) and "not loaded" in str(dm)  # str() must not build the loaders
    assert not (tmp_path / "absent").exists()


def test_registry_metadata_and_typed_builders(tmp_path):
    by_name = {e.name: e for e in entries("dataset", task="vision")}
    assert set(NATURAL) <= set(by_name)
    assert by_name["digits"].meta.get("embedded") is True
    assert by_name["digits"].tasks == ("vision",)  # task=contrastive wraps any family's data (data/contrastive.py)
    with pytest.raises(UserError, match="batch_size"):
        build("digits", tmp_path, batch_size="64")  # type hints are the config schema
    with pytest.raises(UserError, match="val_fraction"):
        build("digits", tmp_path, val_fraction=1.0)
    assert build("cifar10", tmp_path, img_size=64).img_size == 64
    assert build("digits", tmp_path).img_size == 16  # the registered default upsamples the 8 px files
    assert DigitsDataModule().img_size == 8  # the class alone keeps the files' size


# -- digits: splits ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_dm(tmp_path_factory):
    dm = build("digits", tmp_path_factory.mktemp("d"))
    dm.setup("fit")
    return dm


def test_digits_splits_cover_everything_disjointly(digits_dm):
    s = digits_dm.split_indices
    sizes = [len(s[k]) for k in ("train", "val", "test")]
    assert sum(sizes) == 1797 and sizes == [len(digits_dm.train_set), len(digits_dm.val_set), len(digits_dm.test_set)]
    assert np.array_equal(np.sort(np.concatenate([s["train"], s["val"], s["test"]])), np.arange(1797))
    assert 340 < sizes[2] < 380 and 120 < sizes[1] < 160  # 20% test, 10% of the rest for val
    val_counts = np.bincount(digits_dm.val_set.labels.numpy(), minlength=10)
    assert val_counts.min() >= 12 and val_counts.max() <= 16  # stratified: ~14 of each class


def test_digits_split_is_reproducible_and_seeded(digits_dm, tmp_path):
    again = build("digits", tmp_path)
    again.setup()
    other = build("digits", tmp_path, split_seed=1)
    other.setup()
    for k in ("train", "val", "test"):
        assert np.array_equal(again.split_indices[k], digits_dm.split_indices[k])
    assert np.array_equal(other.split_indices["test"], digits_dm.split_indices["test"])  # test split is fixed
    assert not np.array_equal(other.split_indices["val"], digits_dm.split_indices["val"])


def test_digits_batches_shapes_dtypes_and_normalisation(digits_dm):
    x, y = next(iter(digits_dm.train_dataloader()))
    assert x.shape == (32, 1, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= int(y.min()) and int(y.max()) <= 9
    full = torch.cat([b[0] for b in digits_dm.test_dataloader()])
    assert abs(full.mean().item()) < 0.1 and abs(full.std().item() - 1) < 0.1


def test_augmentation_on_train_only(tmp_path, digits_dm):
    torch.manual_seed(0)
    idx = list(range(32))
    first, second = digits_dm.train_set.__getitems__(idx)[0], digits_dm.train_set.__getitems__(idx)[0]
    assert not torch.equal(first, second)  # random crops differ between epochs
    for split in (digits_dm.val_set, digits_dm.test_set):
        assert torch.equal(split.__getitems__(idx)[0], split.__getitems__(idx)[0])
    plain = build("digits", tmp_path, augment=False)
    plain.setup()
    a = plain.train_set.__getitems__(idx)[0]
    assert torch.equal(a, plain.train_set.__getitems__(idx)[0])
    assert torch.allclose(a[5], plain.train_set[5][0])  # batch path == single-sample path


def test_random_crop_flip_matches_its_definition():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (64, 2, 6, 7), dtype=torch.uint8)
    out = RandomCropFlip(pad=2, hflip=True)(x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    flips = 0
    for i in range(len(x)):
        crops = [padded[i, :, r:r + 6, c:c + 7] for r in range(5) for c in range(5)]
        plain = any(torch.equal(out[i], cr) for cr in crops)
        flipped = any(torch.equal(out[i], cr.flip(-1)) for cr in crops)
        assert plain or flipped
        flips += flipped and not plain
    assert 10 < flips < 54  # about half are mirrored
    assert RandomCropFlip(pad=1, hflip=False)(x[0]).shape == x[0].shape


def test_loader_settings(digits_dm):
    train, val = digits_dm.train_dataloader(), digits_dm.val_dataloader()
    # One shuffling order for any number of processes (data/sampling.py).
    assert isinstance(train.sampler, DistributedSampler) and train.sampler.shuffle and isinstance(val.sampler, SequentialSampler)
    assert train.pin_memory == torch.cuda.is_available() and not train.persistent_workers
    workers = build("digits", Path("unused"), num_workers=2)
    workers.setup()
    assert workers.train_dataloader().persistent_workers  # only built, never iterated here


# -- Fashion-MNIST: the real Debian files -----------------------------------------------------
@pytest.mark.skipif(not FASHION_DIR.is_dir(),
                    reason=f"{FASHION_DIR} absent (Debian package dataset-fashion-mnist not installed)")
def test_fashion_mnist_reads_the_system_copy(tmp_path):
    dm = build("fashion_mnist", tmp_path, download=False)
    start = time.perf_counter()
    dm.setup("fit")
    seconds = time.perf_counter() - start
    assert seconds < 10, f"loading took {seconds:.1f}s"
    assert len(dm.train_set) + len(dm.val_set) == 60000 and len(dm.test_set) == 10000
    assert len(dm.val_set) == 6000
    assert dm.train_set.images.shape[1:] == (1, 28, 28) and dm.train_set.images.dtype == torch.uint8
    assert np.array_equal(np.bincount(dm.test_set.labels.numpy()), [1000] * 10)
    raw = read_idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz")
    assert raw.shape == (10000, 28, 28) and torch.equal(dm.test_set.images[:, 0], torch.from_numpy(raw.copy()))
    x = dm.val_set.__getitems__(range(2000))[0]
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1


def test_fashion_mnist_missing_names_the_four_files(tmp_path, monkeypatch):
    monkeypatch.setattr(FashionMNISTDataModule, "SYSTEM_DIRS", (tmp_path / "no-system-copy",))
    dm = build("fashion_mnist", tmp_path / "data", download=False)
    with pytest.raises(MissingDataError) as info:
        dm.prepare_data()
    for f in FashionMNISTDataModule.FILES:
        assert f.name in str(info.value) and f.url in str(info.value)
    assert str(tmp_path / "no-system-copy") in str(info.value)


# -- CIFAR: fake batches in the official pickle format ------------------------------------------
def _batch(n: int, seed: int, num_classes: int, cifar100: bool) -> dict:
    rng = np.random.RandomState(seed)
    labels = [i % num_classes for i in range(n)]
    batch = {b"batch_label": b"fake", b"data": rng.randint(0, 256, (n, 3072)).astype(np.uint8),
             b"filenames": [b"img%d.png" % i for i in range(n)]}
    if cifar100:  # coarse labels differ from the fine ones, so reading the wrong key shows
        batch.update({b"fine_labels": labels, b"coarse_labels": [(l + 1) % 20 for l in labels]})
    else:
        batch[b"labels"] = labels
    return batch


def _write_cifar(folder: Path, cifar100: bool) -> dict[str, dict]:
    """Official layout: 5 train batches + test_batch (CIFAR-10) or train + test (CIFAR-100)."""
    classes = 100 if cifar100 else 10
    names = ["train", "test"] if cifar100 else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    sizes = [500, 100] if cifar100 else [40] * 5 + [30]
    batches = {}
    folder.mkdir(parents=True)
    for seed, (name, n) in enumerate(zip(names, sizes)):
        batches[name] = _batch(n, seed, classes, cifar100)
        (folder / name).write_bytes(pickle.dumps(batches[name], protocol=2))  # the originals are protocol 2
    return batches


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("form", ["folder", "tarball"])
def test_cifar_reads_folder_and_tarball(name, form, tmp_path):
    cls = {"cifar10": CIFAR10DataModule, "cifar100": CIFAR100DataModule}[name]
    home = tmp_path / "data" / name
    staging = tmp_path / "staging" if form == "tarball" else home
    batches = _write_cifar(staging / cls.folder, cifar100=name == "cifar100")
    if form == "tarball":
        home.mkdir(parents=True)
        with tarfile.open(home / cls.archive.name, "w:gz") as tar:
            tar.add(staging / cls.folder, arcname=cls.folder)
    dm = build(name, tmp_path / "data", download=False)
    dm.prepare_data()
    dm.setup()
    n_train = sum(len(batches[f][b"data"]) for f in cls.train_files)
    n_test = len(batches[cls.test_files[0]][b"data"])
    assert len(dm.train_set) + len(dm.val_set) == n_train and len(dm.test_set) == n_test
    test = batches[cls.test_files[0]]
    assert torch.equal(dm.test_set.images, torch.from_numpy(test[b"data"].reshape(-1, 3, 32, 32)))
    key = b"fine_labels" if name == "cifar100" else b"labels"
    assert dm.test_set.labels.tolist() == test[key]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32 and int(y.max()) < dm.num_classes
    if form == "tarball":
        assert (home / cls.folder / cls.test_files[0]).is_file()  # extracted next to the archive


def test_cifar_missing_mentions_archive_and_folder(tmp_path):
    with pytest.raises(MissingDataError) as info:
        build("cifar100", tmp_path, download=False).setup()
    msg = str(info.value)
    for needle in ("cifar-100-python.tar.gz", CIFAR100DataModule.archive.url, "cifar-100-python/",
                   str(tmp_path / "cifar100"), "paths.data_dir"):
        assert needle in msg, needle


def test_cifar_reader_refuses_foreign_pickles(tmp_path):
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": Path("/")}, protocol=2))
    with pytest.raises(UserError, match="not a CIFAR python batch"):
        read_cifar_batch(evil, "labels")
