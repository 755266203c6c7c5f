"""Tokens-to-Token ViT (Yuan et al., ICCV 2021), written from the paper.

ViT's hard 16x16 patch split cuts local structure (edges, lines) across patches and
its wide-shallow backbone wastes capacity. T2T-ViT replaces the patch embedding with
a *T2T module* that progressively aggregates neighbouring tokens, then runs a
deep-narrow ViT backbone:

    T_0       = SS_0(I)                                  soft split of the image
    T'_i      = MLP(MSA(T_{i-1}))                        re-structurization ...
    I_i       = Reshape(T'_i)                            ... tokens back to an image
    T_i       = SS_i(I_i)                                soft split: overlapping k x k
    x         = [cls; Linear(T_n)] + E_pos               to the backbone width D
    features  = LN(ViT-blocks(x))[:, 0]                  class token, no head

A soft split with (kernel k, stride s, padding p) of an h x w map gives
floor((h + 2p - k) / s + 1) x floor((w + 2p - k) / s + 1) tokens of size C * k * k,
each the channel-major concatenation of one k x k patch (`nn.Unfold`).

The paper's splits for 224 px are (7,4,2), (3,2,1), (3,2,1) (total stride 16, 14x14
tokens). The defaults here suit 28-32 px images: (3,2,1), (3,2,1), (3,1,1) gives
8x8 tokens at 32 px and 7x7 at 28 px.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from labformer.errors import UserError
from labformer.registry import register

# Defaults sized for 28-32 px inputs (see module docstring); total stride 4.
SMALL_KERNELS, SMALL_STRIDES, SMALL_PADDINGS = (3, 3, 3), (2, 2, 1), (1, 1, 1)
# The paper's 224 px setting; total stride 16.
PAPER_KERNELS, PAPER_STRIDES, PAPER_PADDINGS = (7, 3, 3), (4, 2, 2), (2, 1, 1)


class SoftSplit(nn.Module):
    """Overlapping split of an image into tokens: [B,C,H,W] -> [B, H'W', C*k*k].

    Token (i, j) (row-major) is x_pad[:, :, i*s : i*s+k, j*s : j*s+k] flattened
    channel-major, with H' = floor((H + 2p - k) / s + 1).
    """

    def __init__(self, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.unfold = nn.Unfold(kernel_size=kernel, stride=stride, padding=padding)

    def out_size(self, size: int) -> int:
        return (size + 2 * self.padding - self.kernel) // self.stride + 1

    def forward(self, image: Tensor) -> Tensor:
        return self.unfold(image).transpose(1, 2)


def restructurize(tokens: Tensor, height: int, width: int) -> Tensor:
    """I = Reshape(T'): tokens [B, h*w, C] in row-major grid order -> image [B, C, h, w]."""
    b, n, c = tokens.shape
    if n != height * width:
        raise ValueError(f"{n} tokens cannot be reshaped to a {height}x{width} grid")
    return tokens.transpose(1, 2).reshape(b, c, height, width)


class TokenTransformer(nn.Module):
    """One T2T transformer layer T' = MLP(MSA(T)) that also narrows C*k*k -> token_dim.

        V-skip:  A  = v + W_o softmax(q k^T / sqrt(d)) v,   [q, k, v] = LN(T) W_qkv
                 T' = A + MLP(LN(A))

    The input width (C*k*k) differs from the output width, so the attention residual
    adds v (already token_dim wide) rather than T, as in the paper's released model.
    The scale uses d = token_dim / heads (standard SDPA); the released code happened
    to scale by the input width C*k*k instead.
    """

    def __init__(self, in_dim: int, dim: int, num_heads: int = 1, mlp_ratio: float = 1.0,
                 qkv_bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise UserError(f"token_dim={dim} is not divisible by {num_heads} heads; "
                            "pick a token_dim that is a multiple of the heads")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(in_dim)
        self.qkv = nn.Linear(in_dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio))

    def forward(self, tokens: Tensor) -> Tensor:
        b, n, _ = tokens.shape
        q, k, v = self.qkv(self.norm1(tokens)).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v)
        attn = attn.transpose(1, 2).reshape(b, n, -1)
        v = v.transpose(1, 2).reshape(b, n, -1)
        x = v + self.proj(attn)
        return x + self.mlp(self.norm2(x))


def sinusoid_table(length: int, dim: int) -> Tensor:
    """E[pos, 2i] = sin(pos / 10000^(2i/d)), E[pos, 2i+1] = cos(...): [1, length, dim]."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.pow(10000.0, -torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table[None]


class T2TViT(nn.Module):
    """T2T module + deep-narrow ViT backbone. `forward(images[B,C,H,W]) -> [B, num_features]`.

    Positional embedding: fixed sinusoid by default, as in the paper. It adds no
    parameters (the from-scratch, small-data regime the paper targets) and exists
    for any token count, so the model also runs on other image sizes than
    `img_size`. `pos_embed="learned"` gives a trainable table sized for `img_size`.
    """

    def __init__(self, in_chans: int = 3, img_size: int = 32, embed_dim: int = 256, depth: int = 7,
                 num_heads: int = 4, mlp_ratio: float = 2.0, token_dim: int = 64,
                 split_kernels: tuple[int, ...] | list[int] = SMALL_KERNELS,
                 split_strides: tuple[int, ...] | list[int] = SMALL_STRIDES,
                 split_paddings: tuple[int, ...] | list[int] = SMALL_PADDINGS,
                 qkv_bias: bool = False, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1, pos_embed: Literal["sincos", "learned"] = "sincos") -> None:
        """embed_dim: backbone width D (= num_features); depth: backbone blocks; num_heads: per backbone block;
        mlp_ratio: backbone MLP hidden width / D; token_dim: token width inside the T2T module; split_kernels,
        split_strides, split_paddings: soft-split kernel, stride and zero padding per stage (one T2T layer
        between consecutive splits); qkv_bias: on the query/key/value projections; drop_rate: dropout after
        attention/MLP projections and on embeddings; attn_drop_rate: on attention weights; drop_path_rate:
        stochastic depth at the last block (linear from 0)."""
        super().__init__()
        splits = [tuple(int(v) for v in vs) for vs in (split_kernels, split_strides, split_paddings)]
        if len({len(vs) for vs in splits}) != 1 or not splits[0]:
            raise UserError("model.split_kernels, split_strides and split_paddings must be non-empty "
                            f"and of equal length, got {splits}; e.g. [3,3,3], [2,2,1], [1,1,1]")
        self.splits = nn.ModuleList(SoftSplit(k, s, p) for k, s, p in zip(*splits))
        grid = self.grid_sizes(img_size)
        if grid[-1] < 1:
            raise UserError(f"img_size={img_size} is too small for soft splits {list(zip(*splits))}: "
                            f"grids {grid}. Use smaller kernels/strides in model.split_*")
        # Layer i narrows the tokens of split i (width C*k_i^2, then token_dim*k_i^2) to token_dim.
        widths = [in_chans * splits[0][0] ** 2] + [token_dim * k ** 2 for k in splits[0][1:]]
        # As in the paper: one head, MLP ratio 1, no dropout inside the T2T module.
        self.t2t_layers = nn.ModuleList(TokenTransformer(w, token_dim) for w in widths[:-1])
        self.project = nn.Linear(widths[-1], embed_dim)

        self.num_features = self.embed_dim = embed_dim
        self.num_tokens = grid[-1] ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_kind = pos_embed
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens + 1, embed_dim))
        elif pos_embed == "sincos":  # deterministic, so not saved in checkpoints
            self.register_buffer("pos_embed", sinusoid_table(self.num_tokens + 1, embed_dim), persistent=False)
        else:
            raise UserError(f"model.pos_embed must be 'sincos' or 'learned', got {pos_embed!r}")
        self.pos_drop = nn.Dropout(drop_rate)
        # Stochastic depth grows linearly with depth (plain Python: the model also builds on meta).
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(*(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, proj_drop=drop_rate,
                  attn_drop=attn_drop_rate, drop_path=r, norm_layer=nn.LayerNorm) for r in rates))
        self.norm = nn.LayerNorm(embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        def init(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

        self.apply(init)
        trunc_normal_(self.cls_token, std=0.02)
        if self.pos_kind == "learned":
            trunc_normal_(self.pos_embed, std=0.02)

    def grid_sizes(self, size: int) -> list[int]:
        """Side of the token grid after each soft split for a `size` x `size` input."""
        sides = []
        for split in self.splits:
            size = split.out_size(size)
            sides.append(size)
        return sides

    def tokens_to_token(self, images: Tensor) -> Tensor:
        """The T2T module: images [B,C,H,W] -> tokens [B, h*w, embed_dim] (no cls, no PE)."""
        first = self.splits[0]
        tokens = first(images)
        # Track the grid (h, w) so each re-structurization knows the image it rebuilds.
        h, w = first.out_size(images.shape[-2]), first.out_size(images.shape[-1])
        for layer, split in zip(self.t2t_layers, self.splits[1:]):
            tokens = split(restructurize(layer(tokens), h, w))
            h, w = split.out_size(h), split.out_size(w)
        return self.project(tokens)

    def forward(self, images: Tensor) -> Tensor:
        tokens = self.tokens_to_token(images)
        b, n, _ = tokens.shape
        pos = self.pos_embed
        if pos.shape[1] != n + 1:
            if self.pos_kind == "learned":
                raise UserError(f"got {n} tokens but the learned position table holds {pos.shape[1] - 1}: "
                                "feed images of the img_size the model was built for")
            pos = sinusoid_table(n + 1, self.embed_dim).to(tokens)
        x = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1) + pos
        x = self.norm(self.blocks(self.pos_drop(x)))
        return x[:, 0]


# Registered sizes (the paper's Table 1; its 224 px splits are PAPER_KERNELS/STRIDES/PADDINGS).
PAPER = "Yuan et al. 2021, Tokens-to-Token ViT"
register("t2t_vit_7", task="vision", paper=PAPER, args=dict(embed_dim=256, depth=7, num_heads=4, mlp_ratio=2.0))(
    T2TViT)  # 4.3M parameters at 224 px
register("t2t_vit_12", task="vision", paper=PAPER, args=dict(embed_dim=256, depth=12, num_heads=4, mlp_ratio=2.0))(
    T2TViT)  # 6.9M
register("t2t_vit_14", task="vision", paper=PAPER, args=dict(embed_dim=384, depth=14, num_heads=6, mlp_ratio=3.0))(
    T2TViT)  # 21.5M
