"""Omniglot (Lake et al. 2015) for the contrastive (siamese) family: handwritten characters of
many alphabets, 20 drawers per character, split by character so no test character is seen in
training.

Archives, read straight from the zip files in `<data_dir>/omniglot/`:

- `images_background_small1.zip` (5 alphabets, 136 characters) and `images_background_small2.zip`
  (5 more alphabets; `archive=small1+small2` reads both): their sha256 are known, so
  `download=true` fetches them (checksum-verified, through `files.locate`), as it does the 20
  official one-shot runs (`official_runs=true`, omniglot_runs.py).
- `images_background.zip` (30 alphabets, 964 characters) and `images_evaluation.zip`
  (20 alphabets, 659 characters): no checksum is published for them and `files.py` only
  downloads against a known sha256, so they are never downloaded. Put them in the folder by
  hand (the error message gives the URLs); they are then found by name.

`archive="auto"` reads `images_background.zip` when present, else small1. Test characters
(`test_characters`): "auto" uses the 659 characters of `images_evaluation.zip` when that
file is present (the official background/evaluation protocol), otherwise holds out a fixed
`test_fraction` of every alphabet's characters (seed TEST_SEED, the same for every
`split_seed`); "evaluation" requires the file; "held_out" always holds out. Validation
characters are `val_fraction` of every alphabet's remaining background characters, drawn
with `split_seed`. With small1 and the defaults: 74 train / 17 val / 45 test characters.

Images are inverted (strokes 255 on a 0 background, so zero padding is background), resized
once at load (antialiased) and kept as uint8 [N,1,S,S]; labels are character indices over
the whole dataset (background characters first, sorted by alphabet and character, then
evaluation ones), so they are NOT 0..num_classes-1 within a split: the contrastive family
compares images, it does not classify characters. `num_classes` (train characters) is
known only after `setup()`, since it depends on which archive is found.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch

from labformer.data.files import MissingDataError, RemoteFile, locate
from labformer.data.vision.base import ImageTensorDataset, VisionDataModule, stratified_split
from labformer.errors import UserError
from labformer.registry import register

URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
SMALL1 = RemoteFile("images_background_small1.zip", URL + "images_background_small1.zip",
                    "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4")
SMALL2 = RemoteFile("images_background_small2.zip", URL + "images_background_small2.zip",
                    "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f")
SMALLS = "small1+small2"  # Lake et al.'s minimal background: both small sets (10 alphabets)
BACKGROUND = "images_background.zip"
EVALUATION = "images_evaluation.zip"
SIDE = 105  # every Omniglot PNG is 105x105

Archive = Literal["auto", "images_background.zip", "images_background_small1.zip", "images_background_small2.zip",
                  "small1+small2"]
TestCharacters = Literal["auto", "evaluation", "held_out"]


@dataclass
class OmniglotArchive:
    """One archive's contents in zip order sorted by (alphabet, character, file)."""

    images: np.ndarray  # uint8 [N,1,105,105], strokes 255
    characters: np.ndarray  # int64 [N], index into `names`
    drawers: np.ndarray  # int64 [N], 1..20
    names: list[str]  # "alphabet/characterNN", one per character
    alphabets: list[str]  # the alphabet of each character


def read_omniglot_zip(path: str | Path) -> OmniglotArchive:
    """Decode every `<top>/<alphabet>/<characterNN>/<id>_<drawer>.png` of an Omniglot zip."""
    from PIL import Image  # torchvision depends on Pillow; imported late to keep import time low

    path = Path(path)
    images, characters, drawers, names, alphabets = [], [], [], [], []
    index: dict[tuple[str, str], int] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            members = []
            for member in zf.namelist():
                parts = member.split("/")
                if len(parts) == 4 and parts[-1].endswith(".png") and not parts[0].startswith("__MACOSX"):
                    members.append((parts[1], parts[2], parts[3], member))
            for alphabet, character, file, member in sorted(members):
                key = (alphabet, character)
                if key not in index:
                    index[key] = len(names)
                    names.append(f"{alphabet}/{character}")
                    alphabets.append(alphabet)
                with Image.open(io.BytesIO(zf.read(member))) as img:
                    pixels = np.asarray(img.convert("L"))
                if pixels.shape != (SIDE, SIDE):
                    raise UserError(f"{path}: {member} is {pixels.shape[1]}x{pixels.shape[0]}, "
                                    f"not {SIDE}x{SIDE}; is it an Omniglot archive?")
                images.append(255 - pixels)  # ink is black in the files: make strokes bright
                characters.append(index[key])
                drawers.append(int(Path(file).stem.rsplit("_", 1)[-1]))
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise MissingDataError(f"{path} could not be read as an Omniglot zip ({e}); "
                               f"delete it and fetch it again.") from e
    if not images:
        raise UserError(f"{path} holds no <alphabet>/<character>/<file>.png images; is it an Omniglot archive?")
    return OmniglotArchive(np.stack(images)[:, None], np.asarray(characters, dtype=np.int64),
                           np.asarray(drawers, dtype=np.int64), names, alphabets)


def split_characters(alphabet_of: np.ndarray, evaluation: np.ndarray | None, val_fraction: float,
                     test_fraction: float, split_seed: int, test_seed: int) -> dict[str, np.ndarray]:
    """Sorted character ids per split; every split holds out a share of each alphabet.

    `evaluation`: the ids of evaluation-archive characters (the test set), or None to hold
    out `test_fraction` of the others with `test_seed`.
    """
    every = np.arange(len(alphabet_of))
    if evaluation is not None:
        test = np.sort(evaluation)
        pool = np.setdiff1d(every, test)
    else:
        keep, held = stratified_split(alphabet_of, test_fraction, test_seed)
        pool, test = every[keep], every[held]
    keep, held = stratified_split(alphabet_of[pool], val_fraction, split_seed)
    return {"train": pool[keep], "val": pool[held], "test": test}


class OmniglotSplit(ImageTensorDataset):
    """ImageTensorDataset plus, per image, its drawer (1..20) and alphabet index."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform,
                 drawers: np.ndarray, alphabets: np.ndarray):
        super().__init__(images, labels, transform)
        self.drawers, self.alphabets = drawers, alphabets


@register("omniglot", task="contrastive", kind="dataset", modality="vision", paper="Lake et al. 2015",
          embedded=False)
class OmniglotDataModule(VisionDataModule):
    """Omniglot characters with class-disjoint train/val/test splits (module docstring)."""

    name, in_chans, natural_size = "omniglot", 1, SIDE
    hflip = False  # a mirrored character is a different (or no) character
    class_disjoint = True  # validation/test characters never appear in training: evaluate by episodes
    # Of [0,1] pixels after inversion, measured on all 2720 images of small1 (resized as at
    # load time); antialiasing keeps the mean, the std shrinks as resizing smooths. Other
    # sizes use the nearest measured one.
    STATS = {28: (0.0763, 0.2133), 105: (0.0763, 0.2654)}
    TEST_SEED = 0  # held-out test characters are the same whatever split_seed

    def __init__(self, data_dir: str | Path = "data", batch_size: int = 64, num_workers: int = 0,
                 img_size: int = 28, archive: Archive = "auto", test_characters: TestCharacters = "auto",
                 val_fraction: float = 0.2, test_fraction: float = 0.33, split_seed: int = 0,
                 official_runs: bool = False, download: bool = True):
        """img_size: side after resizing the 105 px originals once at load (antialiased); archive: auto
        (images_background.zip if present, else images_background_small1.zip), an archive's file
        name or small1+small2; test_characters: auto (images_evaluation.zip's characters if present, else held
        out) | evaluation | held_out; val_fraction: share of every alphabet's non-test characters
        held out for validation; test_fraction: share held out for test without the evaluation
        archive; split_seed: the train/val character split (held-out test characters are fixed);
        official_runs: also test on Lake et al.'s 20 one-shot runs (test/official_oneshot_acc)."""
        super().__init__(data_dir, batch_size, num_workers, img_size, augment=False,
                         val_fraction=val_fraction, split_seed=split_seed, download=download)
        for key, value, valid in (("archive", archive, get_args(Archive)),
                                  ("test_characters", test_characters, get_args(TestCharacters))):
            if value not in valid:
                raise UserError(f"data.{key}={value!r} is not valid for dataset 'omniglot'. "
                                f"Fix: one of {', '.join(valid)}.")
        if not 0 < test_fraction < 1:
            raise UserError(f"data.test_fraction={test_fraction!r} is out of range. Fix: 0<test_fraction<1.")
        self.archive, self.test_characters, self.test_fraction = archive, test_characters, test_fraction
        self.official_runs = official_runs
        mean, std = self.STATS[min(self.STATS, key=lambda s: abs(s - img_size))]
        self.mean, self.std = (mean,), (std,)
        self.num_classes: int | None = None  # train characters, after setup()
        self.character_names: list[str] = []  # "alphabet/characterNN" per label
        self.alphabet_names: list[str] = []
        self.alphabet_of = np.zeros(0, dtype=np.int64)  # alphabet index per label
        self.drawers: dict[str, np.ndarray] = {}  # per split, per image; same arrays as <split>_set.drawers
        self.alphabets: dict[str, np.ndarray] = {}
        self.archives: list[Path] = []  # the files read

    # -- files -------------------------------------------------------------------------
    def find(self, download: bool) -> tuple[list[Path], Path | None]:
        """(background archives, evaluation archive or None); raises MissingDataError."""
        home = self.data_dir.expanduser().absolute() / self.name
        background = self.archive
        if background == "auto":
            background = BACKGROUND if (home / BACKGROUND).is_file() else SMALL1.name
        backgrounds = [SMALL1.name, SMALL2.name] if background == SMALLS else [background]
        use_evaluation = self.test_characters == "evaluation" or (
            self.test_characters == "auto" and (home / EVALUATION).is_file())
        known = {f.name: f for f in (SMALL1, SMALL2)}
        by_hand = [n for n in backgrounds + ([EVALUATION] if use_evaluation else [])
                   if n not in known and not (home / n).is_file()]
        if by_hand:
            raise MissingDataError(self._by_hand_message(by_hand, home))
        downloadable = [known[n] for n in backgrounds if n in known]
        if downloadable:
            hint = (f"Also accepted in {home}/ (found by name, never downloaded: no published checksum): "
                    f"{BACKGROUND} (964 characters) and {EVALUATION} (659 test characters) from {URL}")
            home = locate(self.name, downloadable, self.data_dir, download=download, hint=hint)
        return [home / n for n in backgrounds], (home / EVALUATION if use_evaluation else None)

    def oneshot_runs(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None:
        """With official_runs: per run, (training images [20,1,S,S], test images, answers [20]) as the
        evaluation transform gives them; None without."""
        if not self.official_runs:
            return None
        from labformer.data.contrastive.omniglot_runs import ALL_RUNS, read_oneshot_runs

        folder = locate(self.name, [ALL_RUNS], self.data_dir, download=self.download)
        ready = self.eval_transform()
        return [(ready(self._resize(torch.from_numpy(r.support))), ready(self._resize(torch.from_numpy(r.queries))),
                 torch.from_numpy(r.answers)) for r in read_oneshot_runs(folder / ALL_RUNS.name)]

    def _by_hand_message(self, names: list[str], home: Path) -> str:
        lines = [f"dataset 'omniglot': {len(names)} file(s) not found:"]
        for n in names:
            lines.append(f"  {n}  <- {URL}{n}\n"
                         f"      not downloaded automatically: no published sha256 to check it against")
        lines.append("Searched:\n  " + f"{home}/" + ("" if home.is_dir() else "  (does not exist)"))
        lines.append(f"Fix: put the file(s) in {home}/ (e.g. `curl -L -o {home}/<file> <url>` on a machine with "
                     f"internet), or point the platform at a data folder that holds omniglot/: "
                     f"LABFORMER_DATA_DIR=/path/to/data or paths.data_dir=/path/to/data; or use "
                     f"data.archive={SMALL1.name} data.test_characters=held_out (downloadable).")
        return "\n".join(lines)

    # -- Lightning hooks -----------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:  # read once; every stage reuses the tensors
            return
        backgrounds, evaluation = self.find(self.download)
        self.archives = backgrounds + ([evaluation] if evaluation else [])
        parts = [read_omniglot_zip(p) for p in self.archives]
        offsets = np.cumsum([0] + [len(p.names) for p in parts])
        labels = np.concatenate([p.characters + off for p, off in zip(parts, offsets)])
        drawers = np.concatenate([p.drawers for p in parts])
        self.character_names = [n for p in parts for n in p.names]
        alphabet_per_char = [a for p in parts for a in p.alphabets]
        self.alphabet_names = sorted(set(alphabet_per_char), key=alphabet_per_char.index)  # first-seen order
        self.alphabet_of = np.asarray([self.alphabet_names.index(a) for a in alphabet_per_char], dtype=np.int64)

        eval_chars = np.arange(offsets[len(backgrounds)], offsets[-1]) if evaluation else None
        chars = split_characters(self.alphabet_of, eval_chars, self.val_fraction, self.test_fraction,
                                 self.split_seed, self.TEST_SEED)
        for split, ids in chars.items():
            if len(ids) == 0:
                raise UserError(f"omniglot: the {split} split has no characters with val_fraction="
                                f"{self.val_fraction}, test_fraction={self.test_fraction}. Fix: raise or "
                                f"lower the fraction so every split keeps at least one character.")
        self.split_indices = {s: np.flatnonzero(np.isin(labels, ids)) for s, ids in chars.items()}
        self.num_classes = len(chars["train"])

        x = self._resize(torch.from_numpy(np.concatenate([p.images for p in parts])))
        y = torch.from_numpy(labels)
        transform = self.eval_transform()  # the contrastive family augments .images itself
        for split, idx in self.split_indices.items():
            self.drawers[split], self.alphabets[split] = drawers[idx], self.alphabet_of[labels[idx]]
            data = OmniglotSplit(x[idx], y[idx], transform, self.drawers[split], self.alphabets[split])
            setattr(self, f"{split}_set", data)

    def describe(self) -> str:
        if self.train_set is None:
            return (f"omniglot: not loaded yet, images 1x{self.img_size}x{self.img_size}, "
                    f"archive {self.archive}, test characters {self.test_characters}, batch {self.batch_size}")
        sets = {s: getattr(self, f"{s}_set") for s in ("train", "val", "test")}
        sizes = " / ".join(f"{s} {len(d)} images of {len(d.labels.unique())} characters" for s, d in sets.items())
        files = " + ".join(p.name for p in self.archives)
        return (f"omniglot ({files}, {len(self.alphabet_names)} alphabets): {sizes}, "
                f"images 1x{self.img_size}x{self.img_size}, batch {self.batch_size}")

