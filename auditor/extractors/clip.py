"""``clip-vit-b32``: the CLIP ViT-B/32 image tower (open_clip ``ViT-B-32``, ``laion2b_s34b_b79k``), as
dgm-eval computes its CLIP features.

Conventions are dgm-eval's ``CLIPEncoder`` (``dgm_eval/models/clip.py``; its ``ARCH_WEIGHT_DEFAULTS`` maps
``ViT-B-32`` to ``laion2b_s34b_b79k``), with its defaults ``clean_resize=False`` and ``depth=0``:

- preprocessing: ``TF.resize(image, 224, BICUBIC)`` on the RGB PIL image -- torchvision resizes the
  shorter side to 224 and the longer one to ``int(224 * long / short)`` with Pillow's bicubic filter, and
  returns the image untouched when it already has that size -- then ``ToTensor``, ``TF.center_crop(224)``
  (offsets ``int(round((side - 224) / 2))``, Python's round-half-to-even) and ``Normalize`` with OpenAI's
  CLIP mean and std. Resize and crop run per image in the loader workers on uint8 (a crop commutes with
  ``ToTensor``), so every batch stacks at 224x224; normalisation runs on the device.
- feature: the class token after ``ln_post``, *before* the ``proj`` matrix: 768-d, not the 512-d
  ``encode_image`` embedding (dgm-eval applies ``proj`` only for ``depth == 1``).
- activation: GELU, the ``laion2b_s34b_b79k`` weights' (OpenAI's checkpoints would need QuickGELU; see
  :mod:`auditor.extractors.networks.clip`).

Weights: ``open_clip_pytorch_model.bin`` from ``laion/CLIP-ViT-B-32-laion2B-s34B-b79K`` (the full CLIP state
dict; the text tower is ignored). Its SHA-256 is not pinned yet (``CLIP_VITB32_LAION2B_SHA256``): until it
is, :meth:`ClipVitB32Extractor.check_weights` and the first embedding raise :class:`WeightsNotPinnedError`
instead of loading an unverified file, and ``describe()`` reports ``weights_sha256: None``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from auditor.config import get_settings
from auditor.errors import BadInputError
from auditor.extractors.images import ExtractorOptionError, ImageNetworkExtractor, to_unit_float
from auditor.extractors.networks.clip import (
    CLIP_INPUT_SIZE,
    CLIP_VITB32,
    CLIP_VITB32_LAION2B_FILENAME,
    CLIP_VITB32_LAION2B_URL,
    ClipVisionArchitecture,
    build_clip_visual,
    clip_normalize,
    clip_vitb32_laion2b_weights,
)
from auditor.extractors.weights import WeightsSpec, load_state_dict, resolve_weights


class WeightsNotPinnedError(BadInputError):
    code = "weights_not_pinned"


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """torchvision's ``F.resize(image, size, BICUBIC)`` on a PIL image, with an int ``size``."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_width, new_height) == (width, height):
        return image
    return image.resize((new_width, new_height), Image.Resampling.BICUBIC)


def center_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """torchvision's ``F.center_crop`` for an (H, W, C) image at least ``size`` on each side."""
    height, width = pixels.shape[:2]
    if height < size or width < size:
        raise ValueError(f"cannot centre-crop {height}x{width} to {size}x{size} without padding")
    top = round((height - size) / 2.0)  # Python's round: half to even
    left = round((width - size) / 2.0)
    return pixels[top : top + size, left : left + size]


@dataclass(frozen=True)
class ClipPreprocessing:
    """dgm-eval's CLIP transform: shorter side to ``size`` (Pillow bicubic) and centre crop in the worker,
    OpenAI CLIP normalisation on the device."""

    size: int = CLIP_INPUT_SIZE
    decodes_on_gpu: bool = False

    def in_worker(self, pixels: np.ndarray) -> np.ndarray:
        resized = resize_shorter_side(Image.fromarray(pixels), self.size)
        return np.ascontiguousarray(center_crop(np.asarray(resized), self.size))

    def to_common_size(self, images: Sequence[Tensor]) -> Tensor:
        # in_worker gives every image the same size, so batches always stack.
        raise RuntimeError("CLIP batches are resized and cropped in the workers and always share one size")

    def network_input(self, batch: Tensor) -> Tensor:
        return clip_normalize(to_unit_float(batch))


class ClipVitB32Extractor(ImageNetworkExtractor):
    """dgm-eval's ``clip`` encoder with ``ViT-B-32`` / ``laion2b_s34b_b79k``: 768-d pre-projection features.

    ``pinned_weights`` replaces the base class's ``weights`` (the file's digest is not pinned yet; see the
    module docstring); it is the class attribute to set, or monkeypatch in tests.
    """

    name = "clip-vit-b32"
    version = "1"
    arch: ClassVar[ClipVisionArchitecture] = CLIP_VITB32
    pinned_weights: ClassVar[WeightsSpec | None] = clip_vitb32_laion2b_weights()
    dim = CLIP_VITB32.width
    preprocessing = ClipPreprocessing()

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        options = dict(options or {})
        # The operator may pin the digest of the file they verified (option ``weights_sha256``) until
        # the project pins the official one; the file is then checked against that digest.
        user_sha256 = options.pop("weights_sha256", None)
        if user_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", str(user_sha256)):
            raise ExtractorOptionError(
                f"extractor option weights_sha256 must be 64 lowercase hex digits, got {user_sha256!r}",
                details={"extractor": self.name},
            )
        super().__init__(options)
        self.user_weights = (
            WeightsSpec(
                name="CLIP ViT-B/32 laion2b_s34b_b79k (digest pinned by the operator)",
                filename=CLIP_VITB32_LAION2B_FILENAME,
                sha256=str(user_sha256),
                source_url=CLIP_VITB32_LAION2B_URL,
            )
            if user_sha256 is not None
            else None
        )

    def effective_weights(self) -> WeightsSpec | None:
        return self.pinned_weights or self.user_weights

    def build_network(self, state_dict: Mapping[str, Tensor]) -> nn.Module:
        return build_clip_visual(self.arch, state_dict, project=False)

    def describe_preprocessing(self) -> dict[str, Any]:
        return {
            "decode": "pillow-rgb",
            "resize": f"pillow-bicubic-shorter-side-{CLIP_INPUT_SIZE}",
            "crop": f"center-{CLIP_INPUT_SIZE}x{CLIP_INPUT_SIZE}",
            "normalize": "openai-clip",
            "activation": self.arch.activation,
            "feature": "cls-token-after-ln_post-before-proj",
        }

    def describe(self) -> dict[str, Any]:
        spec = self.effective_weights()
        return {
            "name": self.name,
            "version": self.version,
            "dim": self.dim,
            "weights_sha256": spec.sha256 if spec is not None else None,
            "preprocessing": {
                **self.describe_preprocessing(),
                "decoder": self.options.decoder,
                "dtype": self.options.dtype,
            },
        }

    def weights_spec(self) -> WeightsSpec:
        """The pinned weights, or :class:`WeightsNotPinnedError` while the digest is unknown."""
        spec = self.effective_weights()
        if spec is None:
            raise WeightsNotPinnedError(
                f"extractor {self.name!r} has no pinned SHA-256 for {CLIP_VITB32_LAION2B_FILENAME!r} "
                f"({CLIP_VITB32_LAION2B_URL}), so it cannot verify the file and refuses to load it; pin the "
                "digest in auditor.extractors.networks.clip.CLIP_VITB32_LAION2B_SHA256, or pass the "
                "digest of the file you verified as the extractor option weights_sha256",
                details={"extractor": self.name, "filename": CLIP_VITB32_LAION2B_FILENAME},
            )
        return spec

    def check_weights(self) -> None:
        resolve_weights(self.weights_spec(), get_settings().weights_dir)

    def network(self) -> nn.Module:
        if self._network is None:
            path = resolve_weights(self.weights_spec(), get_settings().weights_dir)
            network = self.build_network(load_state_dict(path)).to(self.device)
            if self.options.channels_last:
                # torch's type stubs lack Module.to's memory_format overload.
                network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            self._network = network
        return self._network
