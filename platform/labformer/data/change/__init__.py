"""Change detection data: (before, after, change mask) triples; importing this package registers them."""
from labformer.data.change import pairs  # noqa: F401
