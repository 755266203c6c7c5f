"""Graph backbones: Batch -> node features [N, num_features]; one architecture per file."""
from labformer.models.graph import exphormer, gat, gcn, gine, gps, graph_transformer, graphormer, polynormer  # noqa: F401
from labformer.models.graph import tokengt  # noqa: F401
from labformer.models.graph import tangnn  # noqa: F401
