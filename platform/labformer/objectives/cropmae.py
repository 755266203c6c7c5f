"""CropMAE, Siamese Cropped Masked Autoencoders (Eymaël et al., ECCV 2024).

Two random crops of one image (the contrastive DataModule's two views). View 1 goes whole
through the shared ViT encoder; view 2 loses `mask_ratio` of its patches (the paper: 0.985,
i.e. 3 of 196 kept; on 16-49 patch grids one patch survives) and only its visible patches go
through the same encoder. A small decoder rebuilds every patch of view 2:

    q   = [P(enc(v2 prefix)), P(enc(v2 visible)) | mask token at the masked places] + sincos pos
    mem = P(enc(v1))                                            P: linear to the decoder width
    block (the authors' order): q += CrossAttn(LN q, mem);  q += MLP(LN q);  q += SelfAttn(LN q)
    pred = Linear(LN q)[patches]                                p*p*C pixels per patch

    L = sum_masked || pred_i - t_i ||^2 / (p*p*C) / #masked,   t_i = (x_i - mean x_i) / sqrt(var x_i + 1e-6)

with x_i view 2's pixels of patch i (MAE's normalised-pixel target; `norm_pix=false`: raw).
Visible patches do not count. The encoder must be a timm VisionTransformer: its patch
tokens are what is masked and rebuilt. Decoder size: the paper's ViT-S decoder is 256 wide,
4 deep, 8 heads; the defaults here fit 16-32 px images and a vit_nano encoder.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import Mlp, build_sincos2d_pos_embed, trunc_normal_

from labformer.errors import UserError
from labformer.models.contrastive.masking import is_vit, kept_count
from labformer.objectives.base import Objective
from labformer.registry import register


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """[B,C,H,W] -> [B, (H/p)*(W/p), p*p*C], patches in row-major order (the ViT's token order)."""
    b, c, h, w = images.shape
    x = images.unfold(2, p, p).unfold(3, p, p)  # [B, C, H/p, W/p, p, p]
    return x.permute(0, 2, 3, 4, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, p: int, channels: int, grid: tuple[int, int]) -> torch.Tensor:
    """The inverse of `patchify`: [B, N, p*p*C] -> [B, C, gh*p, gw*p]."""
    gh, gw = grid
    x = patches.reshape(len(patches), gh, gw, p, p, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(len(patches), channels, gh * p, gw * p)


def normalise_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Mean squared error per patch, averaged over the masked patches only (masked: [B, N] bool)."""
    per_patch = (pred - target).pow(2).mean(-1)
    return (per_patch * masked).sum() / masked.sum().clamp(min=1)


def sample_visible(batch: int, num_patches: int, ratio: float, generator: torch.Generator | None = None,
                   device: torch.device | None = None) -> torch.Tensor:
    """Sorted indices [B, keep] of each item's visible patches (at least one is kept)."""
    keep = kept_count(num_patches, ratio)
    noise = torch.rand(batch, num_patches, generator=generator)
    return noise.argsort(1)[:, :keep].sort(1).values.to(device)


def vit_tokens(vit: nn.Module, images: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
    """All output tokens [B, prefix + n, D] of a timm ViT; with `visible`, only those patches enter it."""
    x = vit._pos_embed(vit.patch_embed(images))  # positions are added before any patch is dropped
    if visible is not None:
        prefix, patches = x[:, :vit.num_prefix_tokens], x[:, vit.num_prefix_tokens:]
        index = visible[..., None].expand(-1, -1, patches.shape[-1])
        x = torch.cat([prefix, patches.gather(1, index)], 1)
    x = vit.norm_pre(vit.patch_drop(x))
    return vit.norm(vit.blocks(x))


class CrossSelfBlock(nn.Module):
    """Pre-norm decoder block of view 2's tokens: cross-attention to view 1, MLP, self-attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm_cross, self.norm_mlp, self.norm_self = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, q: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        q = q + self.cross(self.norm_cross(q), memory, memory, need_weights=False)[0]
        q = q + self.mlp(self.norm_mlp(q))
        h = self.norm_self(q)
        return q + self.attn(h, h, h, need_weights=False)[0]


class CropMAEDecoder(nn.Module):
    def __init__(self, enc_dim: int, grid: tuple[int, int], patch_dim: int, dim: int, depth: int, heads: int,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Fixed 2-D sin-cos positions, as MAE's decoder: the masked places differ only by them.
        self.register_buffer("pos", build_sincos2d_pos_embed(list(grid), dim)[None], persistent=False)
        self.blocks = nn.ModuleList(CrossSelfBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, patch_dim)
        trunc_normal_(self.mask_token, std=0.02)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, visible: torch.Tensor, prefix: int) -> torch.Tensor:
        """Encoder tokens of view 1 [B, T1, E] and of view 2's prefix + visible patches -> [B, N, patch_dim]."""
        memory, tokens = self.embed(view1), self.embed(view2)
        b, n, d = tokens.shape[0], self.pos.shape[1], tokens.shape[-1]
        grid = self.mask_token.to(tokens.dtype).expand(b, n, d)
        grid = grid.scatter(1, visible[..., None].expand(-1, -1, d), tokens[:, prefix:])
        q = torch.cat([tokens[:, :prefix], grid + self.pos.to(tokens.dtype)], 1)
        for block in self.blocks:
            q = block(q, memory)
        return self.head(self.norm(q))[:, prefix:]


@register("cropmae", task="contrastive", kind="objective",
          paper="Eymaël et al. 2024, Efficient Image Pre-Training with Siamese Cropped Masked Autoencoders")
class CropMAE(Objective):
    def __init__(self, feature_dim: int, mask_ratio: float = 0.985, decoder_dim: int = 64, decoder_depth: int = 2,
                 decoder_heads: int = 4, mlp_ratio: float = 4.0, norm_pix: bool = True) -> None:
        """mask_ratio: share of view 2's patches hidden from the encoder (at least one stays visible);
        decoder_dim / decoder_depth / decoder_heads / mlp_ratio: the decoder's size; norm_pix: the target is
        each patch's pixels normalised by their own mean and variance (MAE's norm_pix_loss), else raw."""
        super().__init__(feature_dim)
        if not 0 <= mask_ratio < 1:
            raise UserError(f"objective.mask_ratio={mask_ratio} must be in [0, 1), e.g. objective.mask_ratio=0.985")
        self.mask_ratio, self.norm_pix = mask_ratio, norm_pix
        self.decoder_args = dict(dim=decoder_dim, depth=decoder_depth, heads=decoder_heads, mlp_ratio=mlp_ratio)
        self.decoder: CropMAEDecoder | None = None  # sized by the encoder, in attach()

    def attach(self, encoder: nn.Module) -> None:
        vit = getattr(encoder, "backbone", None)
        if getattr(encoder, "modality", None) != "vision" or not is_vit(vit):
            raise UserError("objective=cropmae masks and rebuilds ViT patches: it needs a ViT encoder "
                            "(model=vit_nano, vit_tiny, vit_small, vit_moe, soft_moe_vit) on image data; "
                            "for other encoders use objective=msn, simsiam or infonce")
        embed = vit.patch_embed
        self.patch_size, self.grid = int(embed.patch_size[0]), tuple(int(g) for g in embed.grid_size)
        self.channels = int(embed.proj.in_channels)
        self.decoder = CropMAEDecoder(vit.embed_dim, self.grid, self.patch_size ** 2 * self.channels,
                                      **self.decoder_args)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def target(self, view2: torch.Tensor) -> torch.Tensor:
        patches = patchify(view2, self.patch_size)
        return normalise_patches(patches) if self.norm_pix else patches

    def reconstruct(self, encoder: nn.Module, view1: torch.Tensor, view2: torch.Tensor,
                    generator: torch.Generator | None = None,
                    visible: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted patches [B, N, p*p*C], masked [B, N] bool); `visible` fixes the mask (else sampled)."""
        vit = encoder.backbone
        if visible is None:
            visible = sample_visible(len(view2), self.num_patches, self.mask_ratio, generator, view2.device)
        pred = self.decoder(vit_tokens(vit, view1), vit_tokens(vit, view2, visible), visible, vit.num_prefix_tokens)
        masked = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device).scatter(1, visible, False)
        return pred, masked

    def loss(self, encoder, batch):
        view1, view2 = batch["views"]
        pred, masked = self.reconstruct(encoder, view1, view2)
        return masked_mse(pred.float(), self.target(view2).float(), masked), {}

    @torch.no_grad()
    def pictures(self, encoder: nn.Module, view1: torch.Tensor, view2: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(view 2 [B,C,H,W], its hidden pixels [B,1,H,W] bool, the reconstruction [B,C,H,W] with the visible
        patches pasted back), in the views' (normalised) pixel units."""
        pred, masked = self.reconstruct(encoder, view1, view2, generator)
        patches = patchify(view2, self.patch_size)
        if self.norm_pix:  # to pixels with each true patch's mean and spread, as MAE's pictures (flatters a bit)
            pred = pred * (patches.var(-1, keepdim=True) + 1e-6).sqrt() + patches.mean(-1, keepdim=True)
        rebuilt = torch.where(masked[..., None], pred.to(patches.dtype), patches)
        hidden = masked[..., None].expand(-1, -1, self.patch_size ** 2).float()
        return (view2, unpatchify(hidden, self.patch_size, 1, self.grid).bool(),
                unpatchify(rebuilt, self.patch_size, self.channels, self.grid))

    def callbacks(self) -> list:
        from labformer.callbacks.reconstruction import ReconstructionPicture

        return [ReconstructionPicture()]
