"""Language-model backbones: `tokens[B,T] -> hidden[B,T,D]`, exposing `num_features`,
`max_len` and `token_embedding` (the task ties its output head to it)."""
from labformer.models.lm import gpt, ngpt, smith  # noqa: F401
