"""Two-view augmentation pipelines of the contrastive family, one module per modality.

Each module registers a view adapter (kind "views", keyed by modality) that knows how to
take the items and labels of a split out of the modality's own DataModule and how to
batch two augmented views of them (see data/contrastive.py for the contract).
"""
from labformer.data.contrastive.views import graph, image, series, text  # noqa: F401
