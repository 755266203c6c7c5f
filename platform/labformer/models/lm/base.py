"""The language-model backbone contract: `tokens[B,T] -> hidden[B,T,D]`.

The LM task builds a backbone with the data's `vocab_size`, `max_len` (the data's context)
and `causal` (False for the classification mode: a bidirectional encoder), owns the output
head and calls the hooks below; a backbone overrides what differs from these defaults.
"""
from __future__ import annotations

import torch
import torch.nn as nn


# builder argument: the DataModule attribute it comes from
INPUTS = {"vocab_size": "vocab_size", "max_len": "context", "causal": "causal"}
EXAMPLE_INPUTS = {"vocab_size": 65, "max_len": 64, "causal": True}  # tiny-shakespeare, for `labformer list`


class LMBackbone(nn.Module):
    num_features: int  # D
    max_len: int  # longest sequence it reads (generation crops the context to it)
    token_embedding: nn.Embedding  # input embedding; the task ties its head to it when tie_embeddings
    tie_embeddings = True  # False: the head gets its own matrix (e.g. nGPT)
    normalized_head = False  # True: the head's rows are kept on the unit sphere (normalize_weights)
    normalizes_weights = False  # True: the task calls normalize_weights() after every optimiser step

    def normalize_weights(self) -> None:
        """Project the weights back onto their constraint set (nGPT: unit-norm rows)."""

    def scale_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """A backbone-specific scaling of the head's output (nGPT's s_z); identity by default."""
        return logits
