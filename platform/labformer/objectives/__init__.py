"""Siamese objectives (kind "objective", task "contrastive"); the encoder is any family's backbone."""
from labformer.objectives import infonce, msn, pair, simsiam, triplet  # noqa: F401
