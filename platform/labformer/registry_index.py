"""What the registry holds, without importing every family: a cached index.

Importing every family costs seconds (timm, PyG, torchvision, tokenizers) while a run needs one
backbone, one dataset and one task. The index records, for every entry, the module that registers
it, its tasks, its config node (what `model=<name>` etc. put in the config) and, for backbones, its
parameter count. It is built once by importing everything (what the registry did every time
before) and kept in `$LABFORMER_CACHE_DIR` (default `~/.cache/labformer`), keyed by a fingerprint
of the package's source files (path, size, modification time) and the versions of the libraries
whose signatures give defaults: any edit or upgrade rebuilds it. Then:
- config_store.py gives Hydra every entry's node from the index (no imports);
- `registry.get(name)` imports only the module that registers `name`;
- `python -m labformer list` prints from the index.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

PACKAGE = Path(__file__).resolve().parent
FORMAT = 1
LIBRARIES = ("torch", "lightning", "timm", "torch_geometric", "torchvision", "torchmetrics", "hydra-core")

_index: dict[str, Any] | None = None


def cache_dir() -> Path:
    return Path(os.environ.get("LABFORMER_CACHE_DIR") or Path.home() / ".cache" / "labformer")


def fingerprint() -> str:
    digest = hashlib.sha1(f"format {FORMAT}".encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(PACKAGE)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    for name in LIBRARIES:
        try:
            digest.update(f"{name} {metadata.version(name)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name} absent\n".encode())
    return digest.hexdigest()[:16]


def _path() -> Path:
    return cache_dir() / f"registry-{fingerprint()}.json"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("format") == FORMAT else None


def _write(path: Path, data: dict[str, Any]) -> None:
    try:  # atomic: processes of one run (DDP, a multirun) may write it at once
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
        for old in path.parent.glob("registry-*.json"):  # indexes of older code
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only home: the index is rebuilt in each process, nothing else changes


def build() -> dict[str, Any]:
    """Import every family and describe every entry (the slow path, once per code version)."""
    from labformer import registry
    from labformer.config_store import entry_config, open_mapping_keys, task_config

    entries: list[dict[str, Any]] = []
    for kind in registry.kinds():
        for entry in registry.entries(kind):
            item = {"kind": kind, "name": entry.name, "tasks": list(entry.tasks), "module": entry.module}
            if kind == "task":
                item["node"] = task_config(entry)
            elif entry.config_group in ("model", "data", "objective", "logger"):
                item["node"] = entry_config(entry)
                item["open"] = open_mapping_keys(entry)
            entries.append(item)
    return {"format": FORMAT, "entries": entries, "params": {}}


def index() -> dict[str, Any]:
    """The index of this code version: read from the cache, or built (and cached)."""
    global _index
    if _index is None:
        path = _path()
        _index = _read(path)
        if _index is None:
            _index = build()
            _write(path, _index)
    return _index


def entries(kind: str | None = None) -> list[dict[str, Any]]:
    return [e for e in index()["entries"] if kind is None or e["kind"] == kind]


def module_of(kind: str, name: str) -> str | None:
    """The module whose import registers `name`, when the index is already at hand (else None)."""
    global _index
    if _index is None:
        _index = _read(_path())  # read once per process: every lazy lookup of a run asks
    if _index is None:
        return None
    return next((e["module"] for e in _index["entries"] if e["kind"] == kind and e["name"] == name), None)


def parameter_counts(count: Callable[[str], str]) -> dict[str, str]:
    """Every backbone's parameter count (`count(name)`), computed once per code version."""
    data = index()
    missing = [e["name"] for e in entries("backbone") if e["name"] not in data["params"]]
    if missing:
        data["params"].update({name: count(name) for name in missing})
        _write(_path(), data)
    return data["params"]
