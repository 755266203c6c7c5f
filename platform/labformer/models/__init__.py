"""Backbones of every family; importing this package registers them all."""
from labformer.models import vision  # noqa: F401
