"""Real images that ship offline, and weights files the image extractors accept, for extractor tests.

Images: scikit-learn's handwritten digits (8x8, grey levels 0..16), scaled to 0..255 and upscaled by
pixel repetition, written as PNG / JPEG folders, zip and tar archives.

Weights: there is no network to fetch the released checkpoints, so the tests write seeded random state
dicts with the official key sets under the official file names (the FID Inception's through
:mod:`helpers.pytorch_fid_reference`) and point the extractor at them: the extractor class's pinned
:class:`WeightsSpec` is replaced (monkeypatch) by one whose SHA-256 is the generated file's, so the real
lookup and checksum code runs unchanged.
"""

from __future__ import annotations

import dataclasses
import io
import math
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits

from auditor.extractors.networks.dinov2 import Dinov2Architecture, Dinov2VisionTransformer
from auditor.extractors.weights import WeightsSpec, file_sha256

DIGIT_SIDE = 32


def digit_pixels(start: int, count: int, side: int = DIGIT_SIDE) -> np.ndarray:
    """(count, side, side) uint8 grey digits ``start .. start + count - 1`` of the 1797 in the set."""
    digits = load_digits().images
    if start + count > len(digits):
        raise ValueError(f"only {len(digits)} digits; asked for {start}..{start + count - 1}")
    small = (digits[start : start + count] * (255 / 16)).round().astype(np.uint8)
    scale = side // 8
    return small.repeat(scale, axis=1).repeat(scale, axis=2)


def encode_image(pixels: np.ndarray, extension: str) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if extension in ("jpg", "jpeg"):
        image.save(buffer, format="JPEG", quality=95)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_image_folder(root: Path, images: Sequence[np.ndarray], extension: str = "png") -> list[str]:
    """``root/<index:04d>.<ext>`` per image; returns the keys in sorted (= dataset) order."""
    root.mkdir(parents=True, exist_ok=True)
    keys = []
    for index, pixels in enumerate(images):
        key = f"{index:04d}.{extension}"
        (root / key).write_bytes(encode_image(pixels, extension))
        keys.append(key)
    return sorted(keys)


def write_zip(path: Path, folder: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder).as_posix())
    return path


def write_tar(path: Path, folder: Path) -> Path:
    with tarfile.open(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.add(file, file.relative_to(folder).as_posix())
    return path


def spec_for_file(spec: WeightsSpec, path: Path) -> WeightsSpec:
    """``spec`` pinned to the generated file's digest (name, file name and URL kept)."""
    if path.name != spec.filename:
        raise ValueError(f"{path.name} is not {spec.filename}")
    return dataclasses.replace(spec, sha256=file_sha256(path))


def write_dinov2_weights(directory: Path, filename: str, arch: Dinov2Architecture, seed: int) -> Path:
    """Seeded values for every tensor of the network, whose names and shapes are the released
    checkpoint's (tests/extractors/test_dinov2_network.py checks that against the official layout)."""
    with torch.device("meta"):
        layout = {
            key: tuple(value.shape) for key, value in Dinov2VisionTransformer(arch).state_dict().items()
        }
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith(("gamma", "norm1.weight", "norm2.weight", "norm.weight")):
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        elif key.endswith("weight"):
            state[key] = torch.randn(shape, generator=generator) / math.prod(shape[1:]) ** 0.5
        elif key.endswith("bias"):
            state[key] = 0.1 * torch.randn(shape, generator=generator)
        else:  # cls_token, pos_embed, mask_token
            state[key] = torch.randn(shape, generator=generator)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    torch.save(state, path)
    return path
