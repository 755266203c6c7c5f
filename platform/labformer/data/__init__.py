"""DataModules of every family; importing this package registers them all."""
from labformer.data import vision  # noqa: F401
from labformer.data import timeseries  # noqa: F401
from labformer.data import lm, text_classes  # noqa: F401
from labformer.data import graph, graph_files  # noqa: F401
from labformer.data import omniglot  # noqa: F401
from labformer.data import contrastive, views  # noqa: F401
