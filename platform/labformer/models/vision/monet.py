"""MONet (Cheng et al., ICLR 2024, "Multilinear Operator Networks"), written from the paper.

A network with no activation function: its only non-linearity is the elementwise product
of two linear maps of the input, so each layer is a polynomial of degree 2 in its input
and a stack of them a polynomial of high degree. The Mu-Layer maps a token x in R^d to

    Mu(x) = C [ (A n) * (B D n) + A n ],      n = LN(x)

with A in R^{m x d}, the low-rank pair D in R^{l x d}, B in R^{m x l} (l < m), C in R^{d x m}
and * the Hadamard product. The LayerNorm is the layer's first operation, on its input,
before every projection; the `+ A n` term keeps a first-degree path. A Poly-Block is

    Y = X + Mu_1(X)
    Z = Y + Mu_2(Y)          where Mu_2 shifts its normalised input before A and D:
                             n = Shift(LN(Y))

Shift (spatial aggregation, from S2-MLP): the channels split into 4 equal groups and each
group moves one token on the grid: down, up, right, left. Tokens at the edge that have no
neighbour take their own value (replicate, as S2-MLP's code) or zero (`shift_fill`).

    features = mean over tokens of LN(Poly-Blocks(PatchEmbed(image)))

Simplifications relative to the paper:
  - one isotropic stage with a single linear patch embedding (timm's PatchEmbed), not the
    paper's pyramid patch embedding nor its multi-stage model;
  - A, D, B carry no bias (the equation above); C has one. The authors' code also normalises
    the two branches before their product and shifts after the projections; here the norm
    sits on the layer input only and the shift comes before the projections, as stated above;
  - no stochastic depth or dropout.
Defaults suit 28-32 px images: patch 4 (7x7 or 8x8 tokens), width 128, m = 3d, l = m/8 (the
authors' ratio), 8 Poly-Blocks: 2.0M parameters.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from torch import Tensor, nn

from labformer.errors import UserError
from labformer.models.vision.base import check_patches_and_depth
from labformer.registry import register

Fill = Literal["replicate", "zero"]


def spatial_shift(grid: Tensor, fill: Fill = "replicate") -> Tensor:
    """[B, H, W, C] -> [B, H, W, C]; channel group g of token (i, j) is read from token
    (i-1, j), (i+1, j), (i, j-1), (i, j+1) for g = 0, 1, 2, 3 (down, up, right, left)."""
    c, h, w = grid.shape[-1], grid.shape[1], grid.shape[2]
    if c % 4:
        raise UserError(f"the spatial shift splits channels into 4 groups; model.embed_dim={c} is not a multiple "
                        "of 4. Pick a multiple of 4, e.g. model.embed_dim=128")
    x = grid.permute(0, 3, 1, 2)  # F.pad pads the last two dims
    pad = F.pad(x, (1, 1, 1, 1), mode="replicate") if fill == "replicate" else F.pad(x, (1, 1, 1, 1))
    g = c // 4
    # Padded index 1 + i is token i; reading at offset (di, dj) takes token (i + di - 1, j + dj - 1).
    groups = [pad[:, k * g:(k + 1) * g, di:di + h, dj:dj + w]
              for k, (di, dj) in enumerate(((0, 1), (2, 1), (1, 0), (1, 2)))]
    return torch.cat(groups, dim=1).permute(0, 2, 3, 1)


class MuLayer(nn.Module):
    """x -> C[(A n) * (B D n) + A n] with n = LN(x) (then Shift(n) when `shift`): [B, H, W, d] -> same."""

    def __init__(self, dim: int, hidden: int, rank: int, shift: bool = False, fill: Fill = "replicate") -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.A = nn.Linear(dim, hidden, bias=False)
        self.D = nn.Linear(dim, rank, bias=False)
        self.B = nn.Linear(rank, hidden, bias=False)
        self.C = nn.Linear(hidden, dim)
        self.shift, self.fill = shift, fill

    def forward(self, x: Tensor) -> Tensor:
        n = self.norm(x)
        if self.shift:
            n = spatial_shift(n, self.fill)
        a = self.A(n)
        return self.C(a * self.B(self.D(n)) + a)


class PolyBlock(nn.Module):
    """X -> Y = X + Mu_1(X) -> Y + Mu_2(Y), Mu_2 with the spatial shift."""

    def __init__(self, dim: int, hidden: int, rank: int, fill: Fill = "replicate") -> None:
        super().__init__()
        self.mu1 = MuLayer(dim, hidden, rank)
        self.mu2 = MuLayer(dim, hidden, rank, shift=True, fill=fill)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.mu1(x)
        return x + self.mu2(x)


class MONet(nn.Module):
    """Patch embedding, Poly-Blocks on the token grid, LN, mean over tokens.

    `forward(images[B,C,H,W]) -> [B, num_features]`.
    """

    def __init__(self, in_chans: int = 3, img_size: int = 32, patch_size: int = 4, embed_dim: int = 128,
                 depth: int = 8, hidden_ratio: float = 3.0, rank_ratio: float = 0.125,
                 shift_fill: Fill = "replicate") -> None:
        """patch_size: side of the square patches; embed_dim: width d (= num_features, a multiple of 4);
        depth: Poly-Blocks (two Mu-Layers each); hidden_ratio: m / d; rank_ratio: l / m (the low rank of
        B D, below 1); shift_fill: what edge tokens read where the shift has no neighbour."""
        super().__init__()
        check_patches_and_depth(patch_size, img_size, depth, "Poly-Blocks", 8)
        if embed_dim < 4 or embed_dim % 4:
            raise UserError(f"model.embed_dim={embed_dim} must be a positive multiple of 4 (the shift moves 4 "
                            "channel groups); e.g. model.embed_dim=128")
        if shift_fill not in ("replicate", "zero"):
            raise UserError(f"model.shift_fill must be 'replicate' or 'zero', got {shift_fill!r}")
        hidden = round(embed_dim * hidden_ratio)
        rank = round(hidden * rank_ratio)
        if hidden < 1 or not 1 <= rank < hidden:
            raise UserError(f"model.hidden_ratio={hidden_ratio} and model.rank_ratio={rank_ratio} give m={hidden}, "
                            f"l={rank}; the low rank needs 1 <= l < m: pick 0 < rank_ratio < 1, e.g. 0.125")
        # strict_img_size=False: no position table, so the grid may be any size.
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, flatten=False, output_fmt="NHWC",
                                      strict_img_size=False)
        self.num_features = self.embed_dim = embed_dim
        self.blocks = nn.Sequential(*(PolyBlock(embed_dim, hidden, rank, shift_fill) for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, images: Tensor) -> Tensor:
        grid = self.blocks(self.patch_embed(images))  # [B, H, W, d]
        return self.norm(grid).mean(dim=(1, 2))


register("monet", task="vision", paper="Cheng et al. 2024, Multilinear Operator Networks")(MONet)
