"""One LightningModule per family, registered under kind "task"."""
from labformer.tasks import vision  # noqa: F401
