"""CRATE (Yu et al., NeurIPS 2023, "White-Box Transformers via Sparse Rate Reduction"), written from the paper.

Each layer is one step of alternating optimisation of the sparse rate reduction objective:
compress the tokens against K local subspaces (MSSA, a gradient step on the coding rate),
then sparsify them against a dictionary (ISTA, a proximal step on the sparse-coding loss).
With tokens as columns of Z in R^{d x N}:

    SSA_k(Z)  = (U_k^T Z) softmax((U_k^T Z)^T (U_k^T Z) * scale)      U_k in R^{d x p}, scale = p^-1/2
    MSSA(Z)   = [U_1 ... U_K] [SSA_1(Z); ...; SSA_K(Z)]               (an output linear layer, see MSSA)
    Z_half    = Z + MSSA(LN(Z))
    Y         = LN(Z_half)
    Z_next    = ReLU(Y + eta D^T (Y - D Y) - eta lambda)               D in R^{d x d}, no residual

Query, key and value of a head are the SAME projection U_k^T z: the attention compares
tokens inside one subspace and moves them towards their neighbours there. The ISTA step
is one proximal-gradient step from Y on  lambda ||X||_1 + 1/2 ||Y - D X||^2 with X >= 0.

    x        = [cls; PatchEmbed(image)] + E_pos                     learned E_pos
    features = LN(CRATE-layers(x))[:, 0]                            class token

Defaults suit 28-32 px images: patch 4 (7x7 or 8x8 tokens), width 192 (DeiT-Ti's, p = 64
as in CRATE-T/S/B), 12 layers, 3 heads; 1.35M parameters (the paper's CRATE-T is width 384).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, trunc_normal_
from torch import Tensor, nn

from labformer.errors import UserError
from labformer.models.vision.base import check_patches_and_depth
from labformer.registry import register


class MSSA(nn.Module):
    """Multi-head subspace self-attention: tokens [B, N, d] -> [B, N, d].

    `subspaces.weight` stacks U_1^T ... U_K^T ([K p, d]): one projection serves as query,
    key and value. The paper's output map [U_1 ... U_K] (times the constant p / (N eps^2))
    would reuse the U_k; like the authors' code, `proj` is its own linear layer instead,
    which absorbs the constant and lets the output basis be learned.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise UserError(f"model.num_heads={num_heads} must divide model.embed_dim={dim} (d = K p); "
                            f"pick num_heads among the divisors of {dim}, e.g. model.num_heads=3")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.subspaces = nn.Linear(dim, dim, bias=False)  # U^T: no bias, a projection onto subspaces
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: Tensor) -> Tensor:
        b, n, _ = tokens.shape
        w = self.subspaces(tokens).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # [B, K, N, p]
        heads = F.scaled_dot_product_attention(w, w, w, scale=self.scale)  # softmax(w w^T scale) w
        return self.proj(heads.transpose(1, 2).reshape(b, n, -1))


class ISTA(nn.Module):
    """One non-negative ISTA step against a learned dictionary D: Y -> ReLU(Y + eta D^T (Y - D Y) - eta lambda).

    Tokens are rows here, so D y is `y @ D.T` and D^T r is `r @ D`.
    """

    def __init__(self, dim: int, step_size: float = 0.1, lambd: float = 0.1) -> None:
        super().__init__()
        if step_size <= 0:
            raise UserError(f"model.step_size={step_size} must be > 0 (the ISTA step eta; the paper uses 0.1)")
        if lambd < 0:
            raise UserError(f"model.lambd={lambd} must be >= 0 (the sparsity weight lambda; the paper uses 0.1)")
        self.step_size, self.lambd = step_size, lambd
        self.dictionary = nn.Parameter(torch.empty(dim, dim))
        nn.init.kaiming_uniform_(self.dictionary)  # as the authors' code

    def forward(self, y: Tensor) -> Tensor:
        d = self.dictionary
        return F.relu(y + self.step_size * ((y - y @ d.T) @ d) - self.step_size * self.lambd)


class CRATELayer(nn.Module):
    """Z -> ISTA(LN(Z + MSSA(LN(Z))))."""

    def __init__(self, dim: int, num_heads: int, step_size: float, lambd: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MSSA(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ista = ISTA(dim, step_size, lambd)

    def forward(self, z: Tensor) -> Tensor:
        z = z + self.attn(self.norm1(z))
        return self.ista(self.norm2(z))


class CRATE(nn.Module):
    """Patch embedding, class token, learned positions, CRATE layers, LN of the class token.

    `forward(images[B,C,H,W]) -> [B, num_features]`.
    """

    def __init__(self, in_chans: int = 3, img_size: int = 32, patch_size: int = 4, embed_dim: int = 192,
                 depth: int = 12, num_heads: int = 3, step_size: float = 0.1, lambd: float = 0.1,
                 drop_rate: float = 0.0) -> None:
        """patch_size: side of the square patches; embed_dim: width d (= num_features); depth: CRATE layers;
        num_heads: subspaces K (p = d / K); step_size: ISTA step eta; lambd: ISTA sparsity weight lambda;
        drop_rate: dropout on the embedded tokens."""
        super().__init__()
        check_patches_and_depth(patch_size, img_size, depth, "CRATE layers", 12)
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.num_features = self.embed_dim = embed_dim
        num_tokens = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens + 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        self.layers = nn.Sequential(*(CRATELayer(embed_dim, num_heads, step_size, lambd) for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim)
        trunc_normal_(self.cls_token, std=0.02)
        trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, images: Tensor) -> Tensor:
        tokens = self.patch_embed(images)  # timm checks the image size against the position table's
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        return self.norm(self.layers(self.pos_drop(x)))[:, 0]


register("crate", task="vision", paper="Yu et al. 2023, White-Box Transformers via Sparse Rate Reduction")(CRATE)
