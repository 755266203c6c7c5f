"""One LightningModule per family, registered under kind "task"."""
from labformer.tasks import vision  # noqa: F401
from labformer.tasks import timeseries  # noqa: F401
from labformer.tasks import lm  # noqa: F401
from labformer.tasks import graph  # noqa: F401
from labformer.tasks import contrastive  # noqa: F401
