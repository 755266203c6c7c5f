"""Siamese objectives (kind "objective", task "contrastive"); the encoder is any family's backbone."""
from labformer.objectives import infonce, msn, pair, simsiam, triplet  # noqa: F401
from labformer.objectives import cropmae  # noqa: F401
from labformer.objectives import smith  # noqa: F401
