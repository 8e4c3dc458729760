"""DINOv2 ViT-B/14 and ViT-L/14 in plain torch, loading Meta's ``dinov2_vit{b,l}14_pretrain.pth`` strictly.

The feature is the CLS token after the final LayerNorm (dinov2's ``x_norm_clstoken``): what the torch.hub
models ``dinov2_vitb14``/``dinov2_vitl14`` return, and what dgm-eval computes its metrics on.

The layout is the one dinov2's hub entry points build (``_make_dinov2_model``): patch 14, image size 518
(so a 37x37 grid of position embeddings plus one for CLS), LayerScale on both residual branches, biased
qkv, a GELU MLP of ratio 4, LayerNorm eps 1e-6, no register tokens and ``block_chunks=0``, which gives the
flat ``blocks.<i>.`` keys of the released checkpoints. ``mask_token`` is only used in training but is in
those checkpoints, so it is kept for the strict load.

Position embeddings follow dinov2's ``interpolate_pos_encoding``: untouched on the native grid, otherwise
resampled bicubically with the scale factor ``(grid + 0.1) / 37`` (dinov2's ``interpolate_offset``; the
offset shifts the sampling positions, so ``size=(grid, grid)`` would give different numbers).

Preprocessing is not part of the network. dgm-eval resizes each image to 224x224 with bicubic
interpolation, converts it to [0, 1] and normalises with the ImageNet mean and std; the constants are here
and :func:`imagenet_normalize` does the last step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auditor.extractors.weights import WeightsFormatError, WeightsSpec

DINOV2_INPUT_SIZE = 224
DINOV2_RESIZE_INTERPOLATION = "bicubic"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_LAYER_NORM_EPS = 1e-6
# dinov2's ``interpolate_offset``: kept for backward compatibility with the released weights.
_POS_EMBED_OFFSET = 0.1


@dataclass(frozen=True)
class Dinov2Architecture:
    name: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 14
    mlp_ratio: int = 4
    pretrain_image_size: int = 518

    @property
    def pretrain_grid(self) -> int:
        return self.pretrain_image_size // self.patch_size


DINOV2_VITB14 = Dinov2Architecture("dinov2_vitb14", embed_dim=768, depth=12, num_heads=12)
DINOV2_VITL14 = Dinov2Architecture("dinov2_vitl14", embed_dim=1024, depth=24, num_heads=16)

_DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2"
# Meta publishes no digests and the file names carry no hash prefix. These full SHA-256 digests are the
# ones public projects pin for the files at these URLs (several independent pins agree on each).
DINOV2_VITB14_WEIGHTS = WeightsSpec(
    name="DINOv2 ViT-B/14",
    filename="dinov2_vitb14_pretrain.pth",
    sha256="0b8b82f85de91b424aded121c7e1dcc2b7bc6d0adeea651bf73a13307fad8c73",
    source_url=f"{_DINOV2_URL}/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
)
DINOV2_VITL14_WEIGHTS = WeightsSpec(
    name="DINOv2 ViT-L/14",
    filename="dinov2_vitl14_pretrain.pth",
    sha256="d5383ea8f4877b2472eb973e0fd72d557c7da5d3611bd527ceeb1d7162cbf428",
    source_url=f"{_DINOV2_URL}/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
)
DINOV2_MODELS: dict[str, tuple[Dinov2Architecture, WeightsSpec]] = {
    DINOV2_VITB14.name: (DINOV2_VITB14, DINOV2_VITB14_WEIGHTS),
    DINOV2_VITL14.name: (DINOV2_VITL14, DINOV2_VITL14_WEIGHTS),
}


class PatchEmbed(nn.Module):
    """Non-overlapping patches, linearly projected: (B, 3, H, W) -> (B, H/p * W/p, D), row-major."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention; ``qkv`` rows are all queries, then all keys, then all values."""

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(query, key, value)
        return self.proj(attended.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, embed_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(embed_dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on the attention and MLP branches."""

    def __init__(self, arch: Dinov2Architecture) -> None:
        super().__init__()
        dim = arch.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=_LAYER_NORM_EPS)
        self.attn = Attention(dim, arch.num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=_LAYER_NORM_EPS)
        self.mlp = Mlp(dim, dim * arch.mlp_ratio)
        self.ls2 = LayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class Dinov2VisionTransformer(nn.Module):
    """ImageNet-normalised images (B, 3, H, W), H and W multiples of 14 -> CLS features (B, D).

    Build it with :func:`build_dinov2`.
    """

    def __init__(self, arch: Dinov2Architecture) -> None:
        super().__init__()
        self.arch = arch
        dim = arch.embed_dim
        self.patch_embed = PatchEmbed(arch.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + arch.pretrain_grid**2, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(Block(arch) for _ in range(arch.depth))
        self.norm = nn.LayerNorm(dim, eps=_LAYER_NORM_EPS)

    def forward(self, images: Tensor) -> Tensor:
        grid_h, grid_w = patch_grid(images, self.arch.patch_size)
        patches = self.patch_embed(images)
        tokens = torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)
        x = tokens + interpolate_pos_embed(self.pos_embed, grid_h, grid_w)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


def patch_grid(images: Tensor, patch_size: int) -> tuple[int, int]:
    """(rows, columns) of patches; dinov2 refuses sizes that are not multiples of the patch."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (batch, 3, height, width), got {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if height % patch_size or width % patch_size or height == 0 or width == 0:
        raise ValueError(
            f"image size {height}x{width} is not a positive multiple of the patch size {patch_size}"
        )
    return height // patch_size, width // patch_size


def interpolate_pos_embed(pos_embed: Tensor, grid_h: int, grid_w: int) -> Tensor:
    """Position embeddings (1, 1 + M*M, D) for a ``grid_h`` x ``grid_w`` patch grid, as dinov2 computes them.

    Unchanged on the native M x M grid; otherwise the patch part is resampled bicubically in float32 with
    scale factors ``(grid + 0.1) / M``, and the CLS embedding is kept as it is.
    """
    native = math.isqrt(pos_embed.shape[1] - 1)
    if native**2 != pos_embed.shape[1] - 1:
        raise ValueError(f"{pos_embed.shape[1] - 1} patch position embeddings do not form a square grid")
    if (grid_h, grid_w) == (native, native):
        return pos_embed
    dim = pos_embed.shape[-1]
    embed = pos_embed.float()
    grid = embed[:, 1:].reshape(1, native, native, dim).permute(0, 3, 1, 2)
    scale = ((grid_h + _POS_EMBED_OFFSET) / native, (grid_w + _POS_EMBED_OFFSET) / native)
    resampled = F.interpolate(grid, scale_factor=scale, mode="bicubic", align_corners=False)
    if resampled.shape[-2:] != (grid_h, grid_w):  # the offset exists to keep floor(M * scale) == grid
        raise RuntimeError(
            f"position embeddings resampled to {tuple(resampled.shape[-2:])}, not {grid_h}x{grid_w}"
        )
    patches = resampled.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
    return torch.cat([embed[:, :1], patches], dim=1).to(pos_embed.dtype)


def imagenet_normalize(images: Tensor) -> Tensor:
    """[0, 1] RGB images (B, 3, H, W) -> the ImageNet-standardised input DINOv2 was trained on."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def build_dinov2(arch: Dinov2Architecture, state_dict: Mapping[str, Tensor]) -> Dinov2VisionTransformer:
    """The network in eval mode holding ``state_dict`` (an official ``*_pretrain.pth``), loaded strictly.

    Built on the meta device and filled by assignment: a ViT-L has 304M parameters, and initialising them
    randomly only to overwrite them would cost seconds and a second copy in memory.
    """
    with torch.device("meta"):
        network = Dinov2VisionTransformer(arch)
    try:
        network.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as exc:
        raise WeightsFormatError(f"the weights do not fit {arch.name}: {exc}") from exc
    return network.eval().requires_grad_(False)
