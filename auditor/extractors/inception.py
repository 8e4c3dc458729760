"""``inception-v3-fid``: pool3 features (2048-d) of the FID Inception-v3, computed as pytorch-fid does.

pytorch-fid's image path is ``Image.open(path).convert("RGB")`` -> ``ToTensor()`` (float [0, 1]) -> a batch
-> ``InceptionV3(resize_input=True, normalize_input=True)``, which interpolates the float batch bilinearly
to 299x299 (``align_corners=False``) and maps it to [-1, 1]. The shared loader reproduces it:

- same-size images (the usual case: a generator's output) travel as uint8 and are stacked; on the device
  they become float [0, 1] by the same ``float().div(255)`` as ToTensor and the network runs its own
  interpolation on the batch, the very operation pytorch-fid runs;
- a batch of mixed sizes, which pytorch-fid cannot batch at all (it would need batch size 1), travels as
  a list of uint8 images and is brought to 299x299 per image on the device by that same ``F.interpolate``
  call on each image's float [0, 1] tensor; the network's own interpolation of a 299x299 input is then
  the identity.

With ``channels_last=False`` the features are pytorch-fid's bit for bit (a test); the default NHWC
convolutions sum in another order, which moves features by ~1e-6 relative. autocast (``dtype``) is
available but never the default here: published FIDs are float32 numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auditor.extractors.images import ImageNetworkExtractor, to_unit_float
from auditor.extractors.networks.inception import (
    FID_INCEPTION_FEATURE_DIM,
    FID_INCEPTION_INPUT_SIZE,
    FID_INCEPTION_WEIGHTS,
    build_fid_inception,
)
from auditor.extractors.weights import WeightsSpec


def resize_like_pytorch_fid(image: Tensor) -> Tensor:
    """(3, H, W) uint8 -> (3, 299, 299) float [0, 1]: the interpolation pytorch-fid's network applies."""
    size = (FID_INCEPTION_INPUT_SIZE, FID_INCEPTION_INPUT_SIZE)
    # Contiguous CHW, as ToTensor gives pytorch-fid: the channels-last kernel rounds differently.
    unit = to_unit_float(image.contiguous().unsqueeze(0))
    return F.interpolate(unit, size=size, mode="bilinear", align_corners=False).squeeze(0)


class FidInceptionPreprocessing:
    """Pixels stay at their size until the network (see the module docstring)."""

    decodes_on_gpu = True

    def in_worker(self, pixels: np.ndarray) -> np.ndarray:
        return pixels

    def to_common_size(self, images: Sequence[Tensor]) -> Tensor:
        return torch.stack([resize_like_pytorch_fid(image) for image in images])

    def network_input(self, batch: Tensor) -> Tensor:
        return to_unit_float(batch)


class InceptionV3FidExtractor(ImageNetworkExtractor):
    name = "inception-v3-fid"
    version = "1"
    weights: ClassVar[WeightsSpec] = FID_INCEPTION_WEIGHTS
    dim = FID_INCEPTION_FEATURE_DIM
    preprocessing = FidInceptionPreprocessing()

    def build_network(self, state_dict: Mapping[str, Tensor]) -> nn.Module:
        return build_fid_inception(state_dict)

    def describe_preprocessing(self) -> dict[str, Any]:
        return {
            "decode": "pillow-rgb",
            "resize": f"bilinear-{FID_INCEPTION_INPUT_SIZE}-align_corners_false-float01",
            "input_range": "[-1, 1]",
            "layer": "pool3",
        }
