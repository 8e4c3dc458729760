"""The CLIP ViT image tower (open_clip's ``VisionTransformer``) in plain torch, loading open_clip checkpoints.

Parameter names are open_clip's ``visual.*`` names with the prefix removed (``conv1``, ``class_embedding``,
``positional_embedding``, ``ln_pre``, ``transformer.resblocks.<i>.{ln_1, attn.in_proj_weight,
attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}``, ``ln_post``, ``proj``), so the image tower
of a full open_clip state dict (``open_clip_pytorch_model.bin`` / ``open_clip_model.safetensors`` on the
hub) loads strictly once :func:`visual_state_dict` has picked out the ``visual.`` keys; the text tower's
keys are ignored.

The layout is open_clip's ``_build_vision_tower`` for a plain ViT config: a bias-free patch convolution,
a learnable class embedding and (1 + grid^2, width) position embeddings, ``ln_pre``, pre-norm residual
blocks without LayerScale (``nn.MultiheadAttention``: ``in_proj`` rows are all queries, then all keys,
then all values; 64-wide heads), an MLP of ratio 4, LayerNorm eps 1e-5, token pooling (the class token),
``ln_post`` and the ``proj`` matrix (width x embed_dim).

The activation is part of the architecture: open_clip builds ``nn.GELU`` (exact erf) unless the pretrained
tag asks for ``quick_gelu``, which OpenAI's own checkpoints (and open_clip's ``*-quickgelu`` models) need:
``x * sigmoid(1.702 x)``. ``laion2b_s34b_b79k`` has no ``quick_gelu`` in open_clip's ``pretrained.py``,
so ViT-B-32 on it uses GELU.

Output: dgm-eval's ``CLIPEncoder`` (``dgm_eval/models/clip.py``, default ``depth=0``) returns the class
token after ``ln_post`` and does *not* apply ``proj`` (it multiplies by ``proj`` only for ``depth == 1``),
so its CLIP features are ``width``-dimensional (768 for ViT-B/32), not the 512-d joint-space embedding of
``encode_image``. :class:`ClipVisionTransformer` returns the former by default and the latter with
``project=True``; ``proj`` is loaded either way so that the strict load checks the whole tower.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auditor.extractors.weights import WeightsFormatError, WeightsSpec

CLIP_INPUT_SIZE = 224
CLIP_RESIZE_INTERPOLATION = "bicubic"
# OpenAI's CLIP normalisation (open_clip's OPENAI_DATASET_MEAN / _STD), which dgm-eval's CLIPEncoder uses.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

VISUAL_PREFIX = "visual."
_LAYER_NORM_EPS = 1e-5
_QUICK_GELU_SCALE = 1.702


@dataclass(frozen=True)
class ClipVisionArchitecture:
    """One open_clip ViT image tower: ``width`` x ``layers`` blocks of ``width // head_width`` heads,
    ``patch_size`` patches on an ``image_size`` square, projected to ``embed_dim``."""

    name: str
    width: int
    layers: int
    patch_size: int
    image_size: int
    embed_dim: int
    head_width: int = 64
    mlp_ratio: int = 4
    quick_gelu: bool = False

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def activation(self) -> str:
        return "quick_gelu" if self.quick_gelu else "gelu"


# open_clip's model_configs/ViT-B-32.json (embed_dim 512; vision: image_size 224, layers 12, width 768,
# patch_size 32), with the activation of the laion2b_s34b_b79k weights (GELU) ...
CLIP_VITB32 = ClipVisionArchitecture(
    "ViT-B-32", width=768, layers=12, patch_size=32, image_size=CLIP_INPUT_SIZE, embed_dim=512
)
# ... and of OpenAI's ViT-B/32 (``pretrained='openai'``, also the ``ViT-B-32-quickgelu`` config).
CLIP_VITB32_QUICKGELU = ClipVisionArchitecture(
    "ViT-B-32-quickgelu",
    width=768,
    layers=12,
    patch_size=32,
    image_size=CLIP_INPUT_SIZE,
    embed_dim=512,
    quick_gelu=True,
)

# ``laion/CLIP-ViT-B-32-laion2B-s34B-b79K`` on the Hugging Face hub, open_clip's source for
# ``ViT-B-32`` / ``laion2b_s34b_b79k`` and dgm-eval's default ViT-B-32 weights.
CLIP_VITB32_LAION2B_URL = (
    "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/open_clip_pytorch_model.bin"
)
CLIP_VITB32_LAION2B_FILENAME = "open_clip_pytorch_model.bin"
# The file's full SHA-256 (its Git LFS object id, shown as "SHA256" on the hub's file page). It is not
# pinned yet: no source available when this port was written states it, and a guessed digest would refuse
# the real file or, worse, look like a verified pin. Until it is set, the extractor refuses to load any
# file (WeightsNotPinnedError) rather than load unverified weights. Set it to the hub's digest to enable.
CLIP_VITB32_LAION2B_SHA256: str | None = None


def clip_vitb32_laion2b_weights() -> WeightsSpec | None:
    """The pinned weights of ``ViT-B-32`` / ``laion2b_s34b_b79k``; None while the digest is not pinned."""
    if CLIP_VITB32_LAION2B_SHA256 is None:
        return None
    return WeightsSpec(
        name="CLIP ViT-B/32 laion2b_s34b_b79k",
        filename=CLIP_VITB32_LAION2B_FILENAME,
        sha256=CLIP_VITB32_LAION2B_SHA256,
        source_url=CLIP_VITB32_LAION2B_URL,
    )


class QuickGELU(nn.Module):
    """OpenAI CLIP's GELU approximation, ``x * sigmoid(1.702 x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(_QUICK_GELU_SCALE * x)


class ClipAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (packed q/k/v ``in_proj``, ``out_proj``); self-attention."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(batch, tokens, 3, self.heads, width // self.heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(query, key, value)
        return self.out_proj(attended.transpose(1, 2).reshape(batch, tokens, width))


class ClipMlp(nn.Module):
    def __init__(self, width: int, hidden: int, quick_gelu: bool) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu: nn.Module = QuickGELU() if quick_gelu else nn.GELU()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """open_clip's pre-norm block without LayerScale."""

    def __init__(self, arch: ClipVisionArchitecture) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(arch.width, eps=_LAYER_NORM_EPS)
        self.attn = ClipAttention(arch.width, arch.heads)
        self.ln_2 = nn.LayerNorm(arch.width, eps=_LAYER_NORM_EPS)
        self.mlp = ClipMlp(arch.width, arch.width * arch.mlp_ratio, arch.quick_gelu)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ClipTransformer(nn.Module):
    def __init__(self, arch: ClipVisionArchitecture) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(arch) for _ in range(arch.layers))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class ClipVisionTransformer(nn.Module):
    """CLIP-normalised images (B, 3, S, S), S the architecture's ``image_size`` -> (B, width) features
    (the class token after ``ln_post``, dgm-eval's CLIP feature) or, with ``project``, (B, embed_dim)
    (those times ``proj``: open_clip's ``encode_image`` without normalisation). Build with
    :func:`build_clip_visual`."""

    def __init__(self, arch: ClipVisionArchitecture, project: bool = False) -> None:
        super().__init__()
        self.arch = arch
        self.project = project
        width = arch.width
        self.conv1 = nn.Conv2d(3, width, kernel_size=arch.patch_size, stride=arch.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(1 + arch.grid**2, width))
        self.ln_pre = nn.LayerNorm(width, eps=_LAYER_NORM_EPS)
        self.transformer = ClipTransformer(arch)
        self.ln_post = nn.LayerNorm(width, eps=_LAYER_NORM_EPS)
        self.proj = nn.Parameter(torch.zeros(width, arch.embed_dim))

    @property
    def output_dim(self) -> int:
        return self.arch.embed_dim if self.project else self.arch.width

    def forward(self, images: Tensor) -> Tensor:
        size = self.arch.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(
                f"{self.arch.name} reads images of shape (batch, 3, {size}, {size}), "
                f"got {tuple(images.shape)}"
            )
        patches = self.conv1(images).flatten(2).transpose(1, 2)  # (B, grid^2, width), row-major
        cls = self.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        x = torch.cat([cls, patches], dim=1) + self.positional_embedding.to(patches.dtype)
        x = self.transformer(self.ln_pre(x))
        pooled = self.ln_post(x[:, 0])
        return pooled @ self.proj if self.project else pooled


def clip_normalize(images: Tensor) -> Tensor:
    """[0, 1] RGB images (B, 3, H, W) -> CLIP-standardised input (OpenAI's mean and std)."""
    mean = torch.tensor(CLIP_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def visual_state_dict(state_dict: Mapping[str, Tensor]) -> OrderedDict[str, Tensor]:
    """The image tower's tensors under open_clip's ``visual.`` names, prefix removed.

    A full open_clip state dict (image and text towers, ``logit_scale``) gives its ``visual.*`` entries;
    a dict with no ``visual.`` key at all is taken to be an image tower saved on its own (the keys of
    ``model.visual.state_dict()``) and is returned unchanged, for the strict load to judge.
    """
    visual = OrderedDict(
        (key[len(VISUAL_PREFIX) :], value)
        for key, value in state_dict.items()
        if key.startswith(VISUAL_PREFIX)
    )
    return visual if visual else OrderedDict(state_dict.items())


def build_clip_visual(
    arch: ClipVisionArchitecture, state_dict: Mapping[str, Tensor], project: bool = False
) -> ClipVisionTransformer:
    """The image tower in eval mode holding ``state_dict``'s image-tower tensors, loaded strictly.

    ``state_dict``: a full open_clip state dict (text keys ignored) or the image tower alone. Built on the
    meta device and filled by assignment, as :func:`auditor.extractors.networks.dinov2.build_dinov2`.
    """
    with torch.device("meta"):
        network = ClipVisionTransformer(arch, project=project)
    try:
        network.load_state_dict(visual_state_dict(state_dict), strict=True, assign=True)
    except RuntimeError as exc:
        raise WeightsFormatError(f"the weights do not fit the {arch.name} image tower: {exc}") from exc
    return network.eval().requires_grad_(False)
