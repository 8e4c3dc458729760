"""``dinov2-vitb14`` (the recommended image extractor) and ``dinov2-vitl14``: DINOv2 CLS features.

Preprocessing is dgm-eval's (``dgm_eval/models/dinov2.py``, the default ``clean_resize=False``): the RGB
PIL image is resized to 224x224 with ``TF.Resize((224, 224), BICUBIC)`` -- on a PIL image that is Pillow's
``resize((224, 224), BICUBIC)``, which filters over the whole source footprint when it shrinks -- then
``ToTensor`` ([0, 1]) and ``Normalize`` with the ImageNet mean and std. The aspect ratio is not kept
(no shorter-side resize and centre crop, unlike the ImageNet evaluation transform): every pixel is seen.

The resize runs per image in the loader workers on uint8 pixels; Pillow's output is uint8, so nothing is
lost by moving it as uint8, and every batch stacks at 224x224 whatever the source sizes. Normalisation
runs on the device. Decoding JPEGs on the GPU is refused: the Pillow resize could not run on its output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from torch import Tensor, nn

from auditor.extractors.images import ImageNetworkExtractor, to_unit_float
from auditor.extractors.networks.dinov2 import (
    DINOV2_INPUT_SIZE,
    DINOV2_VITB14,
    DINOV2_VITB14_WEIGHTS,
    DINOV2_VITL14,
    DINOV2_VITL14_WEIGHTS,
    Dinov2Architecture,
    build_dinov2,
    imagenet_normalize,
)
from auditor.extractors.weights import WeightsSpec


@dataclass(frozen=True)
class Dinov2Preprocessing:
    """dgm-eval's transform: Pillow bicubic to ``size`` x ``size`` in the worker, ImageNet normalisation."""

    size: int = DINOV2_INPUT_SIZE
    decodes_on_gpu: bool = False

    def in_worker(self, pixels: np.ndarray) -> np.ndarray:
        resized = Image.fromarray(pixels).resize((self.size, self.size), Image.Resampling.BICUBIC)
        return np.array(resized)

    def to_common_size(self, images: Sequence[Tensor]) -> Tensor:
        # in_worker gives every image the same size, so batches always stack.
        raise RuntimeError("DINOv2 batches are resized in the workers and always share one size")

    def network_input(self, batch: Tensor) -> Tensor:
        return imagenet_normalize(to_unit_float(batch))


class _Dinov2Extractor(ImageNetworkExtractor):
    version = "1"
    arch: ClassVar[Dinov2Architecture]
    preprocessing = Dinov2Preprocessing()

    def build_network(self, state_dict: Mapping[str, Tensor]) -> nn.Module:
        return build_dinov2(self.arch, state_dict)

    def describe_preprocessing(self) -> dict[str, Any]:
        return {
            "decode": "pillow-rgb",
            "resize": f"pillow-bicubic-{DINOV2_INPUT_SIZE}x{DINOV2_INPUT_SIZE}",
            "normalize": "imagenet",
            "feature": "cls-token-after-norm",
        }


class Dinov2VitB14Extractor(_Dinov2Extractor):
    name = "dinov2-vitb14"
    arch = DINOV2_VITB14
    weights: ClassVar[WeightsSpec] = DINOV2_VITB14_WEIGHTS
    dim = DINOV2_VITB14.embed_dim


class Dinov2VitL14Extractor(_Dinov2Extractor):
    name = "dinov2-vitl14"
    arch = DINOV2_VITL14
    weights: ClassVar[WeightsSpec] = DINOV2_VITL14_WEIGHTS
    dim = DINOV2_VITL14.embed_dim
