"""Check config values against a function's signature before calling it.

A typo'd key or a string where an int belongs should fail with a message that names
the config key and the fix, not with a TypeError from deep inside a model or the Trainer.
"""
from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Callable, Mapping

from labformer.errors import UserError, close_matches

_SIMPLE = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _accepts(annotation: Any, value: Any) -> bool | None:
    """True/False when the annotation can be checked, None when it is too rich to judge."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_accepts(a, value) for a in typing.get_args(annotation)]
        if any(v is True for v in verdicts):
            return True
        return None if any(v is None for v in verdicts) else False
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return None


def _describe(annotation: Any) -> str:
    if annotation in _SIMPLE:
        return _SIMPLE[annotation]
    return str(annotation).replace("typing.", "")


def _own_parameters(fn: Callable[..., Any]) -> list[tuple[inspect.Parameter, Any]]:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: names only
        hints = {}
    params = list(inspect.signature(fn).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p, hints.get(p.name, p.annotation)) for p in params]


def parameters_of(target: Callable[..., Any]) -> tuple[dict[str, tuple[inspect.Parameter, Any]], bool]:
    """({name: (parameter, type hint)}, takes_any) of a function or a class.

    For a class, the parameters of its `__init__` and, where that forwards `**kwargs`, of
    its bases' `__init__` (the way Task and DataModule subclasses pass settings up).
    `takes_any`: unknown names are accepted (a `**kwargs` that goes nowhere we can see).
    """
    if not isinstance(target, type):
        params = _own_parameters(target)
        found = {p.name: (p, hint) for p, hint in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        return found, any(p.kind is p.VAR_KEYWORD for p, _ in params)
    found: dict[str, tuple[inspect.Parameter, Any]] = {}
    forwards = False  # the last __init__ seen took **kwargs
    for klass in target.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass.__module__.split(".")[0] in ("torch", "lightning", "builtins"):
            # nn.Module / LightningModule / object take no settings: a **kwargs that reaches them
            # is the class's own, which takes any name.
            return found, forwards
        params = _own_parameters(init)
        for p, hint in params:
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                found.setdefault(p.name, (p, hint))
        forwards = any(p.kind is p.VAR_KEYWORD for p, _ in params)
        if not forwards:
            return found, False
    return found, forwards


def check_arguments(target: Callable[..., Any], kwargs: Mapping[str, Any], where: str) -> None:
    """Raise UserError for keys `target` (a function or class) does not take and values of the wrong type."""
    params, takes_any = parameters_of(target)
    for key, value in kwargs.items():
        if key not in params:
            if takes_any:
                continue
            near = close_matches(key, list(params))
            hint = f" Did you mean {where}.{near[0]}?" if near else ""
            raise UserError(f"{where}.{key} is not a setting of {where}.{hint}\n"
                            f"Valid settings: {', '.join(params)}")
        annotation = params[key][1]
        if _accepts(annotation, value) is False:
            raise UserError(f"{where}.{key} must be {_describe(annotation)}, got {value!r} "
                            f"({type(value).__name__}). Fix: {where}.{key}=<{_describe(annotation)}>")
