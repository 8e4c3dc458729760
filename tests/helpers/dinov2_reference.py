"""References for the DINOv2 network: the released checkpoints' layout, random checkpoints in that layout,
their conversion to Hugging Face transformers' ``Dinov2Model``, and dinov2's own pos-embed interpolation.

The layout is written out from dinov2's ``vision_transformer.py`` / ``layers/`` (hub models:
``block_chunks=0``, LayerScale ``ls1``/``ls2``, fused ``attn.qkv``, ``mask_token`` of shape (1, D)), not
read from the network under test, so a renamed or reshaped parameter there shows up as a difference.
The conversion follows transformers' ``convert_dinov2_to_hf.py`` (qkv split into q/k/v projections).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import Dinov2Config, Dinov2Model

from auditor.extractors.networks.dinov2 import Dinov2Architecture


def official_dinov2_layout(arch: Dinov2Architecture) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``dinov2_<arch>_pretrain.pth``."""
    dim, hidden, patch = arch.embed_dim, arch.embed_dim * arch.mlp_ratio, arch.patch_size
    layout: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, dim),
        "pos_embed": (1, 1 + (arch.pretrain_image_size // patch) ** 2, dim),
        "mask_token": (1, dim),
        "patch_embed.proj.weight": (dim, 3, patch, patch),
        "patch_embed.proj.bias": (dim,),
    }
    for index in range(arch.depth):
        block = f"blocks.{index}."
        layout |= {
            f"{block}norm1.weight": (dim,),
            f"{block}norm1.bias": (dim,),
            f"{block}attn.qkv.weight": (3 * dim, dim),
            f"{block}attn.qkv.bias": (3 * dim,),
            f"{block}attn.proj.weight": (dim, dim),
            f"{block}attn.proj.bias": (dim,),
            f"{block}ls1.gamma": (dim,),
            f"{block}norm2.weight": (dim,),
            f"{block}norm2.bias": (dim,),
            f"{block}mlp.fc1.weight": (hidden, dim),
            f"{block}mlp.fc1.bias": (hidden,),
            f"{block}mlp.fc2.weight": (dim, hidden),
            f"{block}mlp.fc2.bias": (dim,),
            f"{block}ls2.gamma": (dim,),
        }
    return layout | {"norm.weight": (dim,), "norm.bias": (dim,)}


def random_official_state_dict(
    arch: Dinov2Architecture, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Seeded values in the official layout, scaled so that activations stay of order one."""
    state = {}
    for key, shape in official_dinov2_layout(arch).items():
        if key.endswith(("gamma", "norm1.weight", "norm2.weight", "norm.weight")):
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        elif key.endswith("weight"):
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=generator) / fan_in**0.5
        elif key.endswith("bias"):
            state[key] = 0.1 * torch.randn(shape, generator=generator)
        else:  # cls_token, pos_embed, mask_token
            state[key] = torch.randn(shape, generator=generator)
    return state


def to_transformers_state_dict(
    state: dict[str, torch.Tensor], arch: Dinov2Architecture
) -> dict[str, torch.Tensor]:
    dim = arch.embed_dim
    converted = {
        "embeddings.cls_token": state["cls_token"],
        "embeddings.mask_token": state["mask_token"],
        "embeddings.position_embeddings": state["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "layernorm.weight": state["norm.weight"],
        "layernorm.bias": state["norm.bias"],
    }
    for index in range(arch.depth):
        ours, theirs = f"blocks.{index}.", f"encoder.layer.{index}."
        for part, name in enumerate(("q_proj", "k_proj", "v_proj")):
            rows = slice(part * dim, (part + 1) * dim)
            converted[f"{theirs}attention.{name}.weight"] = state[f"{ours}attn.qkv.weight"][rows]
            converted[f"{theirs}attention.{name}.bias"] = state[f"{ours}attn.qkv.bias"][rows]
        for suffix in ("weight", "bias"):
            converted[f"{theirs}attention.o_proj.{suffix}"] = state[f"{ours}attn.proj.{suffix}"]
            for module in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                converted[f"{theirs}{module}.{suffix}"] = state[f"{ours}{module}.{suffix}"]
        converted[f"{theirs}layer_scale1.lambda1"] = state[f"{ours}ls1.gamma"]
        converted[f"{theirs}layer_scale2.lambda1"] = state[f"{ours}ls2.gamma"]
    return converted


def transformers_dinov2(
    arch: Dinov2Architecture, state: dict[str, torch.Tensor], image_size: int | None = None
) -> Dinov2Model:
    """transformers' ``Dinov2Model`` holding ``state``; ``image_size`` must match ``state["pos_embed"]``."""
    config = Dinov2Config(
        hidden_size=arch.embed_dim,
        num_hidden_layers=arch.depth,
        num_attention_heads=arch.num_heads,
        mlp_ratio=arch.mlp_ratio,
        image_size=image_size or arch.pretrain_image_size,
        patch_size=arch.patch_size,
        layer_norm_eps=1e-6,
        layerscale_value=1.0,
        qkv_bias=True,
        use_swiglu_ffn=False,
        hidden_act="gelu",
    )
    model = Dinov2Model(config).eval()
    model.load_state_dict(to_transformers_state_dict(state, arch), strict=True)
    return model


def dinov2_interpolate_pos_encoding(
    pos_embed: torch.Tensor, x: torch.Tensor, w: int, h: int, patch_size: int
) -> torch.Tensor:
    """dinov2's ``DinoVisionTransformer.interpolate_pos_encoding`` (vision_transformer.py), transcribed with
    its own names: ``x`` are the tokens (CLS + patches), ``w``/``h`` are ``x.shape[2]``/``x.shape[3]`` of the
    image, i.e. height and width despite the names."""
    previous_dtype = x.dtype
    npatch = x.shape[1] - 1
    N = pos_embed.shape[1] - 1
    if npatch == N and w == h:
        return pos_embed
    pos_embed = pos_embed.float()
    class_pos_embed = pos_embed[:, 0]
    patch_pos_embed = pos_embed[:, 1:]
    dim = x.shape[-1]
    w0 = w // patch_size
    h0 = h // patch_size
    M = int(math.sqrt(N))
    assert N == M * M
    sx = float(w0 + 0.1) / M
    sy = float(h0 + 0.1) / M
    patch_pos_embed = F.interpolate(
        patch_pos_embed.reshape(1, M, M, dim).permute(0, 3, 1, 2),
        mode="bicubic",
        antialias=False,
        scale_factor=(sx, sy),
    )
    assert (w0, h0) == patch_pos_embed.shape[-2:]
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1).to(previous_dtype)
