"""The forecasting backbone contract: `x[B,L,C] -> forecast[B,H,C]` in the data's scaled units.

The time-series task builds a backbone with the data's `lookback` (L), `horizon` (H) and
`channels` (C). Every backbone here is a plain module; the Protocol states the contract.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


# builder argument: the DataModule attribute it comes from
INPUTS = {"lookback": "lookback", "horizon": "horizon", "channels": "channels"}
EXAMPLE_INPUTS = {"lookback": 96, "horizon": 96, "channels": 7}  # ETT at L=H=96, for `labformer list`


@runtime_checkable
class ForecastBackbone(Protocol):
    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...
