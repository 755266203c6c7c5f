"""Backbones of every family; importing this package registers them all."""
from labformer.models import vision  # noqa: F401
from labformer.models import timeseries  # noqa: F401
from labformer.models import lm  # noqa: F401
from labformer.models import graph  # noqa: F401
from labformer.models import contrastive  # noqa: F401
