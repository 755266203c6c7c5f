"""Writing a file so that a reader (or a resumed run) never sees it half-written."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes | memoryview, durable: bool = False) -> None:
    """Write `data` to a unique temporary file beside `path` and rename it over `path` (concurrent writers
    each rename a whole file). durable: fsync before the rename, so a power loss cannot leave an empty
    file under the name (checkpoints; a cache can be rebuilt)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
