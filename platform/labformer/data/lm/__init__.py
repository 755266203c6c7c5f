"""Language-modelling DataModules (contract in base.py); importing this package registers them."""
from labformer.data.lm import corpora, markov_classes  # noqa: F401
