"""Keep a benchmark out of the user's home: import this first, before wandb or labformer.

HOME moves into a scratch folder (W&B writes its settings there) and W&B credentials are dropped
from the environment, so an offline run stays offline; the vision benchmarks' helpers (common.py)
become importable.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def scratch(prefix: str) -> Path:
    """A fresh folder holding the new HOME (`<folder>/home`); the caller deletes it when done."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    (folder / "home").mkdir()
    os.environ["HOME"] = str(folder / "home")
    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        del os.environ[key]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vision"))
    return folder
