"""Omniglot: the real small1 zip, fake full archives, and episodes over its test characters."""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from labformer.data.contrastive import omniglot
from labformer.data.files import MissingDataError, sha256_file
from labformer.errors import UserError
from labformer.registry import create, get
from labformer.evaluation.episodes import episode_accuracy, sample_episodes

from conftest import fake_omniglot_runs

DATA = Path(os.environ.get("LABFORMER_DATA_DIR", Path(__file__).parents[3] / "shared" / "data"))
SMALL1 = DATA / "omniglot" / omniglot.SMALL1.name
needs_small1 = pytest.mark.skipif(not SMALL1.is_file(), reason=f"{SMALL1} absent")
# Characters per alphabet in small1.
SMALL1_ALPHABETS = {"Balinese": 24, "Early_Aramaic": 22, "Greek": 24, "Korean": 40, "Latin": 26}


def build(data_dir: Path, **kw):
    return create("contrastive", "omniglot", kind="dataset", data_dir=str(data_dir), **kw)


@pytest.fixture(scope="module")
def dm():
    if not SMALL1.is_file():
        pytest.skip(f"{SMALL1} absent")
    module = build(DATA, download=False)
    module.setup("fit")
    return module


# -- registry, config, contract -----------------------------------------------------------------
def test_registry_entry_serves_contrastive_vision():
    entry = get("omniglot", kind="dataset", task="contrastive")
    assert entry.tasks == ("contrastive",)
    assert entry.meta["modality"] == "vision" and entry.meta["paper"] == "Lake et al. 2015"
    assert entry.meta["embedded"] is False


def test_contract_known_before_any_file_is_read(tmp_path):
    module = build(tmp_path / "absent")
    assert (module.name, module.in_chans, module.img_size, module.hflip) == ("omniglot", 1, 28, False)
    assert isinstance(module.mean, tuple) and isinstance(module.std, tuple) and len(module.mean) == 1
    assert module.num_classes is None and module.train_set is None
    assert "not loaded" in repr(module) and "not loaded" in str(module)
    assert not (tmp_path / "absent").exists()
    assert build(tmp_path, img_size=105).std[0] > module.std[0]  # native size: unsmoothed, binary pixels


def test_bad_settings_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="archive"):
        build(tmp_path, archive="images_background_small3.zip")
    with pytest.raises(UserError, match="test_characters"):
        build(tmp_path, test_characters="all")
    with pytest.raises(UserError, match="test_fraction"):
        build(tmp_path, test_fraction=1.0)
    with pytest.raises(UserError, match="val_fraction"):
        build(tmp_path, val_fraction=0.0)


# -- the real small1 archive --------------------------------------------------------------------
@needs_small1
def test_small1_checksum_is_the_known_one():
    assert sha256_file(SMALL1) == omniglot.SMALL1.sha256


def test_reads_every_image_inverted_and_resized(dm):
    sets = (dm.train_set, dm.val_set, dm.test_set)
    assert sum(len(s) for s in sets) == 136 * 20
    assert len(dm.character_names) == 136 and dm.alphabet_names == sorted(SMALL1_ALPHABETS)
    assert np.array_equal(np.bincount(dm.alphabet_of), [SMALL1_ALPHABETS[a] for a in dm.alphabet_names])
    for s in sets:
        assert s.images.dtype == torch.uint8 and s.images.shape[1:] == (1, 28, 28)
        assert s.labels.dtype == torch.int64 and len(s.labels) == len(s.images)
    images = torch.cat([s.images for s in sets])
    assert images.float().mean() < 0.25 * 255  # strokes bright on a dark background
    assert images[:, :, 0, :].float().mean() < 5 and images.max() == 255  # borders are background
    assert dm.archives == [SMALL1]
    assert "74 characters" in dm.describe() and "1x28x28" in dm.describe()


def test_splits_are_character_disjoint_and_cover_everything(dm):
    chars = {s: set(getattr(dm, f"{s}_set").labels.tolist()) for s in ("train", "val", "test")}
    assert not (chars["train"] & chars["val"] or chars["train"] & chars["test"] or chars["val"] & chars["test"])
    assert chars["train"] | chars["val"] | chars["test"] == set(range(136))
    assert [len(chars[s]) for s in ("train", "val", "test")] == [74, 17, 45] and dm.num_classes == 74
    indices = np.concatenate([dm.split_indices[s] for s in ("train", "val", "test")])
    assert np.array_equal(np.sort(indices), np.arange(2720))
    for s in ("train", "val", "test"):  # every alphabet appears in every split
        assert set(dm.alphabets[s].tolist()) == set(range(5))


def test_every_test_character_has_all_twenty_drawers(dm):
    labels, drawers = dm.test_set.labels.numpy(), dm.test_set.drawers
    for c in np.unique(labels):
        assert sorted(drawers[labels == c].tolist()) == list(range(1, 21))


def test_per_split_drawers_and_alphabets(dm):
    for s in ("train", "val", "test"):
        data = getattr(dm, f"{s}_set")
        assert data.drawers is dm.drawers[s] and data.alphabets is dm.alphabets[s]
        assert np.array_equal(data.alphabets, dm.alphabet_of[data.labels.numpy()])
        assert data.drawers.min() == 1 and data.drawers.max() == 20


def test_hard_coded_mean_std_match_the_data(dm):
    x = torch.cat([s.images for s in (dm.train_set, dm.val_set, dm.test_set)]).float() / 255
    assert abs(x.mean().item() - dm.mean[0]) < 0.01 and abs(x.std().item() - dm.std[0]) < 0.01
    normalised = torch.cat([b[0] for b in dm.test_dataloader()])
    assert abs(normalised.mean().item()) < 0.1 and abs(normalised.std().item() - 1) < 0.1


def test_loaders(dm):
    train = dm.train_dataloader()
    assert isinstance(train.sampler, DistributedSampler) and train.sampler.shuffle
    x, y = next(iter(train))
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(y.tolist()) <= set(dm.train_set.labels.tolist())
    val_labels = torch.cat([b[1] for b in dm.val_dataloader()])
    assert torch.equal(val_labels, dm.val_set.labels)  # unshuffled, in order


def test_split_is_seeded_and_test_characters_fixed(dm):
    same = omniglot.split_characters(dm.alphabet_of, None, 0.2, 0.33, 0, dm.TEST_SEED)
    for s in ("train", "val", "test"):
        assert np.array_equal(np.unique(getattr(dm, f"{s}_set").labels.numpy()), same[s])
    other = omniglot.split_characters(dm.alphabet_of, None, 0.2, 0.33, 1, dm.TEST_SEED)
    assert np.array_equal(other["test"], same["test"]) and not np.array_equal(other["val"], same["val"])


@needs_small1
def test_same_seed_gives_the_same_split_end_to_end(dm):
    again = build(DATA, download=False)
    again.setup()
    for s in ("train", "val", "test"):
        assert np.array_equal(again.split_indices[s], dm.split_indices[s])
    assert torch.equal(again.test_set.images, dm.test_set.images)


# -- missing files ------------------------------------------------------------------------------
def test_missing_small1_names_file_folder_and_url(tmp_path):
    module = build(tmp_path, download=False)
    with pytest.raises(MissingDataError) as info:
        module.setup()
    msg = str(info.value)
    for needle in (omniglot.SMALL1.name, omniglot.SMALL1.url, str(tmp_path / "omniglot"), "images_evaluation.zip"):
        assert needle in msg, needle
    with pytest.raises(MissingDataError):
        module.prepare_data()


def test_missing_full_archives_name_each_file_and_url(tmp_path):
    module = build(tmp_path, archive="images_background.zip", test_characters="evaluation", download=True)
    with pytest.raises(MissingDataError) as info:
        module.setup()  # never downloaded: no checksum, so no network either
    msg = str(info.value)
    for name in ("images_background.zip", "images_evaluation.zip"):
        assert name in msg and omniglot.URL + name in msg
    assert str(tmp_path / "omniglot") in msg and "sha256" in msg


# -- the full archives, faked in the official layout ---------------------------------------------
def _fake_zip(path: Path, top: str, alphabets: dict[str, int], drawers: int, first_id: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    char_id = first_id
    with zipfile.ZipFile(path, "w") as zf:
        for alphabet, n_chars in alphabets.items():
            for c in range(1, n_chars + 1):
                for d in range(1, drawers + 1):
                    img = Image.new("1", (105, 105), 1)  # white paper
                    img.paste(0, (10 * c, 5 * d, 10 * c + 20, 5 * d + 8))  # a black stroke
                    buf = io.BytesIO()
                    img.save(buf, format="PNG")
                    zf.writestr(f"{top}/{alphabet}/character{c:02d}/{char_id:04d}_{d:02d}.png", buf.getvalue())
                char_id += 1


def test_full_archives_are_found_by_name_and_evaluation_is_the_test_set(tmp_path):
    home = tmp_path / "omniglot"
    _fake_zip(home / "images_background.zip", "images_background", {"Alpha": 6, "Beta": 5}, 4, 1)
    _fake_zip(home / "images_evaluation.zip", "images_evaluation", {"Gamma": 3}, 4, 12)
    module = build(tmp_path, img_size=105, download=False)
    module.setup()
    assert [p.name for p in module.archives] == ["images_background.zip", "images_evaluation.zip"]
    assert module.alphabet_names == ["Alpha", "Beta", "Gamma"] and len(module.character_names) == 14
    assert sorted(set(module.test_set.labels.tolist())) == [11, 12, 13]  # evaluation characters follow
    assert set(module.test_set.alphabets.tolist()) == {2}
    assert module.num_classes + len(set(module.val_set.labels.tolist())) == 11
    first = module.test_set.images[0, 0]
    assert first[8, 12] == 255 and first[100, 100] == 0  # stroke bright, paper dark
    held = build(tmp_path, test_characters="held_out", download=False)
    held.setup()
    assert [p.name for p in held.archives] == ["images_background.zip"]
    assert max(held.test_set.labels.tolist()) < 11


def test_small1_explicitly_even_when_the_full_archive_is_present(tmp_path):
    home = tmp_path / "omniglot"
    _fake_zip(home / "images_background.zip", "images_background", {"Alpha": 3}, 2, 1)
    _fake_zip(home / "images_background_small1.zip", "images_background_small1", {"Beta": 3, "Delta": 3}, 2, 1)
    module = build(tmp_path, archive="images_background_small1.zip", val_fraction=0.4, test_fraction=0.4,
                   download=False)
    module.setup()
    assert module.alphabet_names == ["Beta", "Delta"]


def test_not_an_omniglot_zip(tmp_path):
    bad = tmp_path / "omniglot" / omniglot.SMALL1.name
    bad.parent.mkdir()
    bad.write_bytes(b"not a zip")
    with pytest.raises(MissingDataError, match="could not be read"):
        build(tmp_path, download=False).setup()


@needs_small1
def test_episodes_on_omniglot_test_characters(dm):
    test = dm.test_set
    episodes = sample_episodes(test.labels, 5, 1, episodes=100, groups=test.alphabets)
    for e in episodes:
        assert len(set(test.alphabets[e.support_idx].tolist())) == 1
    pixels = test.images.flatten(1).float()  # raw pixels: well above the 20% of chance
    assert episode_accuracy(pixels, test.labels, episodes) > 0.3


def test_small1_and_small2_together_form_one_background(tmp_path):
    home = tmp_path / "omniglot"
    _fake_zip(home / omniglot.SMALL1.name, "images_background_small1", {"Beta": 3, "Delta": 3}, 2, 1)
    _fake_zip(home / omniglot.SMALL2.name, "images_background_small2", {"Alpha": 4}, 2, 7)
    module = build(tmp_path, archive="small1+small2", val_fraction=0.4, test_fraction=0.4, download=False)
    module.setup()
    assert [p.name for p in module.archives] == [omniglot.SMALL1.name, omniglot.SMALL2.name]
    assert module.alphabet_names == ["Beta", "Delta", "Alpha"] and len(module.character_names) == 10
    assert set(module.test_set.alphabets.tolist()) == {0, 1, 2}  # every alphabet keeps test characters


def test_official_runs_read_in_their_layout_and_score_a_matching_encoder(tmp_path):
    from labformer.data.contrastive.omniglot_runs import ALL_RUNS, read_oneshot_runs
    from labformer.evaluation.episodes import fixed_runs_accuracy

    home = tmp_path / "omniglot"
    _fake_zip(home / omniglot.SMALL1.name, "images_background_small1", {"Beta": 3, "Delta": 3}, 2, 1)
    order = [2, 0, 3, 1]
    fake_omniglot_runs(home / ALL_RUNS.name, 2, 4, order)
    runs = read_oneshot_runs(home / ALL_RUNS.name)
    assert [r.name for r in runs] == ["run01", "run02"] and runs[0].answers.tolist() == order
    assert runs[0].support.shape == (4, 1, 105, 105) and runs[0].support[0, 0, 30, 2] == 255  # strokes bright
    module = build(tmp_path, img_size=105, official_runs=True, val_fraction=0.4, test_fraction=0.4, download=False)
    ready = module.oneshot_runs()
    assert len(ready) == 2 and ready[0][0].dtype == torch.float32  # normalised like every evaluated image
    flat = lambda x: x.flatten(1)  # noqa: E731  raw pixels: each test stroke overlaps only its class's
    assert fixed_runs_accuracy(flat, ready) == 1.0
    shuffled = [(s, q, (a + 1) % 4) for s, q, a in ready]  # every answer wrong
    assert fixed_runs_accuracy(flat, shuffled) == 0.0
    assert build(tmp_path, download=False).oneshot_runs() is None  # off by default


def test_missing_official_runs_name_the_file_and_url(tmp_path):
    module = build(tmp_path, official_runs=True, download=False)
    with pytest.raises(MissingDataError, match=r"(?s)all_runs\.zip.*one-shot-classification/all_runs\.zip"):
        module.oneshot_runs()
