"""Lake et al.'s 20 official one-shot classification runs (`all_runs.zip`, Science 2015).

Each run `runNN/` holds 20 training images (`training/classKK.png`, one drawing of each of
20 characters of one evaluation alphabet) and 20 test images (`test/itemKK.png`, another
drawer's drawing of each); `class_labels.txt` pairs every test image with its training
image. A model is scored by assigning each test image to its most similar training image;
the papers report the error rate over the 400 test images (Lake et al.'s modified-Hausdorff
baseline: 38.8% error; people: 4.5%). The characters come from the evaluation alphabets, so
a model trained on any background archive never sees them.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labformer.data.files import MissingDataError, RemoteFile
from labformer.errors import UserError

ALL_RUNS = RemoteFile("all_runs.zip", "https://github.com/brendenlake/omniglot/raw/master/python/"
                      "one-shot-classification/all_runs.zip",
                      "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325")


@dataclass
class OneShotRun:
    """One run's images in file order, with each test image's answer as a training-image index."""

    name: str
    support: np.ndarray  # uint8 [20,1,105,105]: training/class01..20.png, strokes 255
    queries: np.ndarray  # uint8 [20,1,105,105]: test/item01..20.png
    answers: np.ndarray  # int64 [20]: answers[i] = k when test item i+1 is of training class k+1


def _image(zf: zipfile.ZipFile, member: str) -> np.ndarray:
    from PIL import Image  # imported late, as in omniglot.py

    with Image.open(io.BytesIO(zf.read(member))) as img:
        return 255 - np.asarray(img.convert("L"))[None]  # ink is black in the files: strokes bright


def read_oneshot_runs(path: str | Path) -> list[OneShotRun]:
    """Every `runNN/` of all_runs.zip, sorted by name."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = sorted({m.split("/")[0] for m in zf.namelist() if m.endswith("/class_labels.txt")})
            runs = []
            for run in names:
                pairs = [line.split() for line in zf.read(f"{run}/class_labels.txt").decode().splitlines() if line]
                tests, trains = sorted(p[0] for p in pairs), sorted(p[1] for p in pairs)
                answer_of = {test: trains.index(train) for test, train in pairs}
                runs.append(OneShotRun(run, np.stack([_image(zf, m) for m in trains]),
                                       np.stack([_image(zf, m) for m in tests]),
                                       np.asarray([answer_of[t] for t in tests], dtype=np.int64)))
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as e:
        raise MissingDataError(f"{path} could not be read as Omniglot's all_runs.zip ({type(e).__name__}: {e}); "
                               f"delete it and fetch it again from {ALL_RUNS.url}") from e
    if not runs:
        raise UserError(f"{path} holds no runNN/class_labels.txt; is it Omniglot's all_runs.zip?")
    return runs
