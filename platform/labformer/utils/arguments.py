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


def check_arguments(fn: Callable[..., Any], kwargs: Mapping[str, Any], where: str) -> None:
    """Raise UserError for keys `fn` does not take and values of the wrong type."""
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: check names only
        hints = {}
    params = sig.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key, value in kwargs.items():
        if key not in params:
            if takes_any:
                continue
            valid = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            near = close_matches(key, valid)
            hint = f" Did you mean {where}.{near[0]}?" if near else ""
            raise UserError(f"{where}.{key} is not a setting of {where}.{hint}\n"
                            f"Valid settings: {', '.join(valid)}")
        annotation = hints.get(key, params[key].annotation)
        if _accepts(annotation, value) is False:
            raise UserError(f"{where}.{key} must be {_describe(annotation)}, got {value!r} "
                            f"({type(value).__name__}). Fix: {where}.{key}=<{_describe(annotation)}>")


def check_class_arguments(cls: type, kwargs: Mapping[str, Any], where: str) -> None:
    """check_arguments for a class whose __init__ forwards **kwargs to its bases' __init__."""
    remaining = dict(kwargs)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        own = {k: v for k, v in remaining.items() if k in params}
        check_arguments(init, own, where)
        remaining = {k: v for k, v in remaining.items() if k not in params}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            check_arguments(init, remaining, where)  # what is left is unknown: name the close match
            return
