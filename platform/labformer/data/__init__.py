"""DataModules of every family; importing this package registers them all."""
from labformer.data import vision  # noqa: F401
