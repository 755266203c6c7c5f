"""Lightning's callback dispatch without the per-call cost of hooks nobody implements.

At every hook (six per training step) Lightning walks all callbacks (a default run has about a dozen)
and, for each, builds a profiler label (ModelCheckpoint's `state_key` formats a string each time),
enters the profiler's context manager and calls the method, even when the method is `Callback`'s own
empty one. On a small model that came to about 0.25 ms per step. The dispatch below calls the same
callbacks in the same order with the same arguments, but skips a callback whose method for the hook is
`Callback`'s empty one, and leaves out the context manager when the profiler is the do-nothing
`PassThroughProfiler` (the default). Runs with a real profiler, or `monitoring_callbacks` set, go
through Lightning's own function. `install()` leaves Lightning alone when its internals differ from
what this expects.
"""
from __future__ import annotations

from typing import Any, Callable

from labformer.utils.lightning_patch import patch


def _empty(self: Any) -> None:
    """A method with nothing in its body but this docstring."""


def empty_hooks(callback_class: type) -> frozenset[str]:
    """The hook names whose method on `callback_class` does nothing (compared by bytecode)."""
    code = _empty.__code__.co_code
    return frozenset(name for name, fn in vars(callback_class).items()
                     if name.startswith("on_") and callable(fn) and getattr(fn, "__code__", None) is not None
                     and fn.__code__.co_code == code)


def install() -> bool:
    """Replace the dispatch (once per process); False when this Lightning version does not fit it."""
    return patch("lightning.pytorch.trainer.call", None, "_call_callback_hooks", fast_dispatch)


def fast_dispatch(original: Callable[..., None]) -> Callable[..., None]:
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.profilers import PassThroughProfiler

    empty = {name: getattr(Callback, name) for name in empty_hooks(Callback)}

    def dispatch(trainer: Any, hook_name: str, *args: Any, monitoring_callbacks: bool | None = None,
                 **kwargs: Any) -> None:
        if monitoring_callbacks is not None or type(trainer.profiler) is not PassThroughProfiler:
            return original(trainer, hook_name, *args, monitoring_callbacks=monitoring_callbacks, **kwargs)
        pl_module = trainer.lightning_module
        if pl_module:
            prev_fx_name = pl_module._current_fx_name
            pl_module._current_fx_name = hook_name
        base = empty.get(hook_name)
        for callback in trainer.callbacks:
            fn = getattr(callback, hook_name)
            if base is not None and getattr(fn, "__func__", None) is base:
                continue  # Callback's own empty method
            if callable(fn):
                fn(trainer, trainer.lightning_module, *args, **kwargs)
        if pl_module:
            pl_module._current_fx_name = prev_fx_name  # restored as Lightning does, for nested hooks
        return None

    return dispatch
