"""DataModules, one folder per family (mirroring models/); importing this package registers them all."""
from labformer.data import contrastive, graph, lm, timeseries, vision  # noqa: F401
