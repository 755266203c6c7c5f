"""Time-series backbones: `x[B,L,C] -> forecast[B,H,C]`; builders take lookback, horizon, channels."""
from labformer.models.timeseries import dlinear, itransformer, lmuformer, patchtst, samformer, transformer  # noqa: F401
from labformer.models.timeseries import nutime  # noqa: F401
