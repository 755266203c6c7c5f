"""The contrastive family's data: two-view wrapping of any family's DataModule, its views, Omniglot."""
from labformer.data.contrastive import datamodule, omniglot, views  # noqa: F401
from labformer.data.contrastive import long_docs  # noqa: F401
