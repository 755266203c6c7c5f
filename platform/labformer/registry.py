"""The one registry: every backbone, dataset, attention variant and objective.

    @register("vit_tiny", task="vision")
    def vit_tiny(in_chans: int, img_size: int, **kw) -> nn.Module: ...

    create("vision", "vit_tiny", in_chans=1, img_size=28)

Entries live in named *kinds* ("backbone", "dataset", "attention", "objective", ...);
each entry says which tasks it serves and carries free-form metadata (e.g. `causal`,
`needs_graph`, `max_len`). `list_models()` and the tests are driven from here, so a
newly registered entry is listed and tested the moment its module is imported.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from labformer.errors import UserError, unknown_choice

BACKBONE = "backbone"


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    tasks: tuple[str, ...]
    builder: Callable[..., Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def config_group(self) -> str:
        """The Hydra group whose `<name>.yaml` sets this entry's defaults."""
        return {"backbone": "model", "dataset": "data"}.get(self.kind, self.kind)

    def config_file(self, conf_dir: Path) -> Path:
        return conf_dir / self.config_group / f"{self.name}.yaml"


_REGISTRY: dict[str, dict[str, Entry]] = {}


def register(name: str, *, task: str | tuple[str, ...], kind: str = BACKBONE, **meta: Any):
    """Decorator adding `builder` under `name`. A duplicate name in one kind is an error."""
    tasks = (task,) if isinstance(task, str) else tuple(task)

    def add(builder: Callable[..., Any]) -> Callable[..., Any]:
        entries = _REGISTRY.setdefault(kind, {})
        if name in entries:
            raise ValueError(f"{kind} '{name}' is registered twice "
                             f"({entries[name].builder.__module__} and {builder.__module__})")
        entries[name] = Entry(name, kind, tasks, builder, dict(meta))
        return builder

    return add


def _load_all() -> None:
    # Importing the packages runs their @register decorators.
    import labformer.data  # noqa: F401
    import labformer.models  # noqa: F401
    import labformer.tasks  # noqa: F401
    import labformer.utils.loggers  # noqa: F401


def kinds() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def entries(kind: str = BACKBONE, task: str | None = None, pattern: str | None = None) -> list[Entry]:
    _load_all()
    found = _REGISTRY.get(kind, {}).values()
    return sorted((e for e in found
                   if (task is None or task in e.tasks)
                   and (pattern is None or fnmatch.fnmatch(e.name, pattern))),
                  key=lambda e: e.name)


def list_models(task: str | None = None, pattern: str | None = None, kind: str = BACKBONE) -> list[str]:
    return [e.name for e in entries(kind, task, pattern)]


def get(name: str, kind: str = BACKBONE, task: str | None = None) -> Entry:
    """The entry `name`; a clear error if it is unknown or does not serve `task`."""
    _load_all()
    known = _REGISTRY.get(kind, {})
    what = "model" if kind == BACKBONE else kind
    if name not in known:
        valid = [e.name for e in known.values() if task is None or task in e.tasks]
        scope = f" for task '{task}'" if task else ""
        raise unknown_choice(what, name, valid or known,
                             fix=f"Pick one of the names above{scope}, e.g. {what}={valid[0] if valid else '...'}"
                             if valid else "")
    entry = known[name]
    if task is not None and task not in entry.tasks:
        valid = [e.name for e in known.values() if task in e.tasks]
        raise UserError(
            f"{what} '{name}' does not serve task '{task}'; it serves: {', '.join(entry.tasks)}.\n"
            f"Use task={entry.tasks[0]}, or a {what} of task '{task}': {', '.join(sorted(valid))}")
    return entry


def create(task: str | None, name: str, *, kind: str = BACKBONE, **kwargs: Any) -> Any:
    """Build entry `name` with `kwargs`; None values are dropped so builder defaults apply."""
    entry = get(name, kind, task)
    from labformer.utils.arguments import check_arguments

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    check_arguments(entry.builder, kwargs, where=entry.config_group)
    return entry.builder(**kwargs)
