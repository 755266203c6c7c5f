"""The graph backbone contract: `Batch -> node features [N, num_features]`.

The graph task builds a backbone with the data's `in_dim`, `edge_dim`, `lap_pe_dim`,
`rw_se_dim` and `mag_pe_dim` (0: absent), pools the node features itself for graph-level
targets, and calls the hooks below; a backbone overrides what differs from these defaults.
"""
from __future__ import annotations

import torch.nn as nn

from labformer.data.graph.cache import CachedTransform


# builder argument: DataModule attribute it comes from
INPUTS = {"in_dim": "num_node_features", "edge_dim": "num_edge_features", "lap_pe_dim": "lap_pe_dim",
          "rw_se_dim": "rw_se_dim", "mag_pe_dim": "mag_pe_dim"}
# PATTERN-like, for `labformer list`
EXAMPLE_INPUTS = {"in_dim": 3, "edge_dim": 0, "lap_pe_dim": 0, "rw_se_dim": 0, "mag_pe_dim": 0}


class GraphBackbone(nn.Module):
    num_features: int  # D
    # Per-graph preprocessing the backbone reads from every batch (e.g. Exphormer's expander);
    # the builders hand it to the DataModule, which computes and caches it once per dataset.
    data_transform: CachedTransform | None = None
    # Largest graph it accepts (dense attention is quadratic); the DataModule refuses bigger ones.
    max_nodes: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every training epoch (e.g. Polynormer's local-only warm-up)."""
