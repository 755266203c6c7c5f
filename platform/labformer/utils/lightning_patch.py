"""Replacing one Lightning function by a faster one of the same behaviour, once per process."""
from __future__ import annotations

import importlib
from typing import Any, Callable

_installed: set[tuple[str, str]] = set()


def patch(module: str, owner: str | None, name: str, make: Callable[[Any], Any]) -> bool:
    """Set `module[.owner].name` to `make(original)` once; False (Lightning left alone) when that does not
    exist in this version."""
    key = (f"{module}.{owner}" if owner else module, name)
    if key in _installed:
        return True
    try:
        target: Any = importlib.import_module(module)
    except ImportError:
        return False
    if owner is not None:
        target = getattr(target, owner, None)
    original = getattr(target, name, None)
    if original is None:
        return False
    setattr(target, name, make(original))
    _installed.add(key)
    return True
