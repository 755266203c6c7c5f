"""The one registry: every backbone, dataset, attention variant and objective.

    @register("vit_tiny", task="vision")
    def vit_tiny(in_chans: int, img_size: int, **kw) -> nn.Module: ...

    register("t2t_vit_14", task="vision", args=dict(embed_dim=384, depth=14))(T2TViT)

    create("vision", "vit_tiny", in_chans=1, img_size=28)

A builder is a function or a class. Its signature is the entry's one source of defaults:
`args` (a variant's own sizes, timm's `model_args`) override the signature's, and the
config holds only what a run changes (config_store.py turns `defaults()` into Hydra
choices). `signature` names whose parameters these are when the builder is a generic
adapter (the timm door).

Entries live in named *kinds* ("backbone", "dataset", "attention", "objective", ...);
each entry says which tasks it serves and carries free-form metadata (e.g. `causal`,
`needs_graph`, `max_len`). `list_models()` and the tests are driven from here, so a
newly registered entry is listed and tested the moment its module is imported.
"""
from __future__ import annotations

import fnmatch
import importlib
import pkgutil
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from labformer.errors import UserError, unknown_choice
from labformer.utils.arguments import check_arguments, parameters_of

BACKBONE = "backbone"


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    tasks: tuple[str, ...]
    builder: Callable[..., Any]
    meta: dict[str, Any] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)  # this variant's defaults, over the signature's
    signature: Callable[..., Any] | None = None  # whose parameters are the settings (default: builder)
    fixed: dict[str, Any] = field(default_factory=dict)  # always passed, never a setting (e.g. which file)
    module: str = ""  # the module whose import registers it (registry_index.py imports only that one)

    @property
    def config_group(self) -> str:
        """The Hydra group whose `<name>.yaml` sets this entry's defaults."""
        return {"backbone": "model", "dataset": "data"}.get(self.kind, self.kind)

    def parameters(self) -> dict[str, Any]:
        """{name: (inspect.Parameter, type hint)} of every setting: the builder's own and, for an
        adapter, those of the class it builds (`signature`)."""
        params, _ = parameters_of(self.builder)
        if self.signature is not None:
            params = {**parameters_of(self.signature)[0], **params}
        return {k: v for k, v in params.items() if k not in self.fixed}

    def defaults(self) -> dict[str, Any]:
        """Every setting with a default a config can hold, as a build without config would use it."""
        found = {name: p.default for name, (p, _) in self.parameters().items() if p.default is not p.empty}
        found.update(self.args)
        values = {k: config_value(v) for k, v in found.items()}
        return {k: v for k, v in values.items() if v is not UNREPRESENTABLE}

    def build(self, where: str | None = None, **kwargs: Any) -> Any:
        """The builder called with `args` under `kwargs`, every value checked against the signature."""
        where = where or self.config_group
        for key in kwargs:
            if key in self.fixed:
                raise UserError(f"{where}.{key} is fixed by {self.kind} '{self.name}' ({key}={self.fixed[key]!r}); "
                                f"choose another {self.config_group}= instead of setting it")
        kwargs = {**self.args, **kwargs}
        if self.signature is None:
            check_arguments(self.builder, kwargs, where=where)
        else:  # the adapter's own arguments, then the class's
            own = parameters_of(self.builder)[0]
            check_arguments(self.signature, {k: v for k, v in kwargs.items() if k not in own}, where=where)
        return self.builder(**kwargs, **self.fixed)


UNREPRESENTABLE = object()


def config_value(value: Any) -> Any:
    """`value` as YAML can hold it (tuples become lists), or UNREPRESENTABLE (classes, functions)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [config_value(v) for v in value]
        return UNREPRESENTABLE if any(v is UNREPRESENTABLE for v in items) else items
    if isinstance(value, dict):
        items = {k: config_value(v) for k, v in value.items()}
        ok = all(isinstance(k, str) for k in items) and UNREPRESENTABLE not in items.values()
        return items if ok else UNREPRESENTABLE
    return UNREPRESENTABLE


_REGISTRY: dict[str, dict[str, Entry]] = {}


def register(name: str, *, task: str | tuple[str, ...], kind: str = BACKBONE, args: dict[str, Any] | None = None,
             signature: Callable[..., Any] | None = None, fixed: dict[str, Any] | None = None, **meta: Any):
    """Decorator adding `builder` under `name`. A duplicate name in one kind is an error.

    `args`: this entry's own defaults over the builder's (one class, several sized variants);
    `fixed`: arguments it always passes that are not settings (one reader, several files).
    """
    tasks = (task,) if isinstance(task, str) else tuple(task)
    module = sys._getframe(1).f_globals.get("__name__", "")

    def add(builder: Callable[..., Any]) -> Callable[..., Any]:
        entries = _REGISTRY.setdefault(kind, {})
        if name in entries:
            raise ValueError(f"{kind} '{name}' is registered twice "
                             f"({entries[name].builder.__module__} and {builder.__module__})")
        entries[name] = Entry(name, kind, tasks, builder, dict(meta), dict(args or {}), signature,
                               dict(fixed or {}), module)
        return builder

    return add


_all_loaded = False
# Packages whose modules register entries: each family's folder is imported on its own.
FAMILY_PACKAGES = ("labformer.data", "labformer.models", "labformer.tasks")


def _load_all() -> None:
    """Import every family (their @register decorators run): what listing everything needs."""
    global _all_loaded
    if _all_loaded:
        return
    for package in FAMILY_PACKAGES:
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            importlib.import_module(f"{package}.{info.name}")
    for module in ("labformer.objectives", "labformer.layers", "labformer.utils.loggers"):
        importlib.import_module(module)
    _all_loaded = True


def _load(kind: str, name: str) -> None:
    """Make entry `name` of `kind` registered: import only its module when the index knows it."""
    if name in _REGISTRY.get(kind, {}):
        return
    from labformer import registry_index

    module = registry_index.module_of(kind, name)
    if module:
        importlib.import_module(module)
    if name not in _REGISTRY.get(kind, {}):
        _load_all()


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
    _load(kind, name)
    known = _REGISTRY.get(kind, {})
    what = "model" if kind == BACKBONE else kind
    if name not in known:  # _load imported every family looking for it: the message lists them all
        valid = [e.name for e in known.values() if task is None or task in e.tasks]
        scope = f" for task '{task}'" if task else ""
        raise unknown_choice(what, name, valid or known,
                             fix=f"Pick one of the names above{scope}, e.g. {what}={valid[0] if valid else '...'}"
                             if valid else "")
    entry = known[name]
    if task is not None and task not in entry.tasks:
        _load_all()
        valid = [e.name for e in _REGISTRY.get(kind, {}).values() if task in e.tasks]
        raise UserError(
            f"{what} '{name}' does not serve task '{task}'; it serves: {', '.join(entry.tasks)}.\n"
            f"Use task={entry.tasks[0]}, or a {what} of task '{task}': {', '.join(sorted(valid))}")
    return entry


def create(task: str | None, name: str, *, kind: str = BACKBONE, **kwargs: Any) -> Any:
    """Build entry `name` with `kwargs`; None values are dropped so builder defaults apply."""
    return get(name, kind, task).build(**{k: v for k, v in kwargs.items() if v is not None})
