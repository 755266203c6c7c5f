"""Siamese objectives (kind "objective", task "contrastive"); the encoder is any family's backbone."""
from labformer.models.contrastive import infonce, msn, pair, simsiam, triplet  # noqa: F401
