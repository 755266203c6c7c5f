"""nGPT, the normalised transformer (Loshchilov et al. 2024): representation learning on the hypersphere.

Every hidden state and every weight vector along the embedding dimension has unit norm.
A block moves h towards the (normalised) sub-layer output by learned per-channel
"eigen learning rates" alpha, then projects back onto the sphere:

    h_A = Norm(Attn(h));   h <- Norm(h + alpha_A * (h_A - h))
    h_M = Norm(MLP(h));    h <- Norm(h + alpha_M * (h_M - h))

    Attn: q, k get RoPE, are normalised per head and scaled by s_qk; softmax scale sqrt(d_h)
          (since q.k is now a cosine, not a sum of d_h products)
    MLP:  u = s_u * W_u h,  nu = s_nu * W_nu h * sqrt(D);  out = W_o (u * SiLU(nu))
    logits = s_z * (E_out h)        (the head lives in the task; `scale_logits` applies s_z)

Scaling vectors are stored as `init/scale`-reparametrised parameters (value = p * init/scale,
p initialised to `scale`), as in the paper, so Adam's step size suits them. There are no
norm layers, biases or position embeddings besides RoPE. After every optimiser step the
matrices are re-normalised (`normalize_weights`, run by the task's `UnitNormWeights`
callback); the paper uses no weight decay and no warm-up.
"""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.layers.rope import apply_rope, rope_angles
from labformer.models.lm.base import LMBackbone
from labformer.registry import register


def unit(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return F.normalize(x, dim=dim, eps=1e-12)


class Scale(nn.Module):
    """A learned vector used as `p * (init / scale)`, with p starting at `scale`."""

    def __init__(self, size: int, init: float, scale: float) -> None:
        super().__init__()
        self.factor = init / scale
        self.p = nn.Parameter(torch.full((size,), scale))

    def forward(self) -> torch.Tensor:
        return self.p * self.factor


class NGPTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, hidden: int, causal: bool, alpha_init: float) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.causal = num_heads, dim // num_heads, causal
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.up = nn.Linear(dim, 2 * hidden, bias=False)  # W_u and W_nu
        self.mlp_out = nn.Linear(hidden, dim, bias=False)
        base = dim ** -0.5
        self.alpha_attn, self.alpha_mlp = Scale(dim, alpha_init, base), Scale(dim, alpha_init, base)
        self.s_qk = Scale(self.head_dim, 1.0, base)
        self.s_u, self.s_nu = Scale(hidden, 1.0, 1.0), Scale(hidden, 1.0, 1.0)
        self.dim = dim

    def attention(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        q, k, v = self.qkv(h).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        s = self.s_qk()
        q = unit(apply_rope(q, cos, sin)) * s
        k = unit(apply_rope(k, cos, sin)) * s
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, scale=self.head_dim ** 0.5)
        return self.attn_out(out.transpose(1, 2).reshape(b, t, d))

    def mlp(self, h: torch.Tensor) -> torch.Tensor:
        u, nu = self.up(h).chunk(2, dim=-1)
        return self.mlp_out(u * self.s_u() * F.silu(nu * self.s_nu() * self.dim ** 0.5))

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = unit(h + self.alpha_attn() * (unit(self.attention(h, cos, sin)) - h))
        return unit(h + self.alpha_mlp() * (unit(self.mlp(h)) - h))

    def normalize_weights(self) -> None:
        # Rows of matrices reading the embedding space, columns of those writing into it.
        for w in (self.qkv.weight, self.up.weight):
            w.copy_(unit(w, dim=1))
        for w in (self.attn_out.weight, self.mlp_out.weight):
            w.copy_(unit(w, dim=0))


@register("ngpt", task="lm", paper="Loshchilov et al. 2024, nGPT: Normalized Transformer")
class NGPT(LMBackbone):
    normalized_head = True  # the task's output embedding rows live on the sphere too
    normalizes_weights = True  # every optimiser step ends on the sphere
    tie_embeddings = False  # the paper keeps separate input and output embeddings

    def __init__(self, vocab_size: int, max_len: int, causal: bool = True, depth: int = 4, dim: int = 128,
                 num_heads: int = 4, hidden_ratio: float = 4.0, alpha_init: float = 0.05,
                 rope_base: float = 10000.0) -> None:
        """hidden_ratio: the SwiGLU hidden width is 2/3 of hidden_ratio * dim (the parameters of a 4x MLP);
        alpha_init: initial eigen learning rates of the attention and MLP updates."""
        super().__init__()
        if dim % num_heads or (dim // num_heads) % 2:
            raise UserError(f"ngpt needs dim divisible by num_heads with an even head size (RoPE); "
                            f"got dim={dim}, num_heads={num_heads}")
        self.vocab_size, self.max_len, self.causal, self.num_features = vocab_size, max_len, causal, dim
        hidden = max(1, int(round(dim * hidden_ratio * 2 / 3)))  # SwiGLU: as many weights as a 4x MLP
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.blocks = nn.ModuleList(NGPTBlock(dim, num_heads, hidden, causal, alpha_init) for _ in range(depth))
        self.s_z = Scale(vocab_size, 1.0, dim ** -0.5)
        cos, sin = rope_angles(max_len, dim // num_heads, rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=self.num_features ** -0.5)
        with torch.no_grad():
            self.normalize_weights()

    @torch.no_grad()
    def normalize_weights(self) -> None:
        self.token_embedding.weight.copy_(unit(self.token_embedding.weight, dim=1))
        for block in self.blocks:
            block.normalize_weights()

    def scale_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits * self.s_z()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        if t > self.max_len:
            raise UserError(f"sequence of {t} tokens is longer than the model's max_len={self.max_len}")
        h = self.token_embedding(tokens)
        for block in self.blocks:
            h = block(h, self.rope_cos, self.rope_sin)
        return h
