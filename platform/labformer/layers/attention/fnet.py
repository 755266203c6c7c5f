"""FNet token mixing (Lee-Thorp et al. 2022): no attention weights, a 2-D Fourier transform.

    y = Re( FFT_seq( FFT_hidden(x) ) ) / sqrt(T D)

Every output position mixes every input position, so it cannot be causal; it serves
encoders (the LM task's sequence-classification mode). O(T log T) per channel, no
parameters: the block's FFN does all the learning. The paper's post-norm blocks rescale
the output anyway; in a pre-norm block the residual stream keeps it, so the transform
is taken orthonormal (/sqrt(T D)) and the mixer preserves the input's scale.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from labformer.layers.attention.base import refuse_causal
from labformer.layers.build import ANY_TASK
from labformer.registry import register


@register("fnet", task=ANY_TASK, kind="attention", causal=False, complexity="O(T d log(T d))",
          paper="Lee-Thorp et al. 2022, FNet: Mixing Tokens with Fourier Transforms")
class FourierMixer(nn.Module):
    def __init__(self, dim: int, num_heads: int = 1, causal: bool = False, max_len: int = 1024,
                 dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        refuse_causal("fnet", causal)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # FFT in float32: half-precision FFTs need power-of-two sizes and lose accuracy.
        return torch.fft.fft2(x.float(), dim=(-2, -1), norm="ortho").real.to(x.dtype)
