"""One measured cost of Lightning's `self.log`, removed without changing what it does.

Every `self.log` call moves its result object to the value's device (`_ResultMetric.to`), and that
walks the object's whole `__dict__` with `apply_to_collection`, deep-copying its metadata dataclasses:
about half a millisecond per call on a CPU, even when everything is already where it should be. A
task logs a handful of epoch values per epoch (tasks/epoch_logging.py), so on runs of one-step epochs
(full-batch graphs) this was the largest cost the platform added per step. The fast path below
returns at once when the value and its batch-size counter already sit on the target device (the
state every later call of a run finds); any other call goes through Lightning's own method.
`install()` leaves Lightning alone when its internals differ from what this expects.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from labformer.utils.lightning_patch import patch

def install() -> bool:
    """Add the fast path (once per process); False when this Lightning version does not fit it."""
    return patch("lightning.pytorch.trainer.connectors.logger_connector.result", "_ResultMetric", "to", fast_to)


def fast_to(original: Callable[..., Any]) -> Callable[..., Any]:
    def on(tensor: Any, device: torch.device) -> bool:
        return isinstance(tensor, torch.Tensor) and tensor.device.type == device.type \
            and device.index in (None, tensor.device.index)

    def to(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = self.__dict__
        if len(args) == 1 and not kwargs and isinstance(args[0], (torch.device, str)) and state.get("is_tensor"):
            device = torch.device(args[0])
            count = state.get("cumulated_batch_size")  # kept only for mean reductions
            if on(state.get("value"), device) and (count is None or on(count, device)):
                return self
        return original(self, *args, **kwargs)

    return to
