"""Pretrained feature networks in plain torch (no torchvision), each loading its checkpoint strictly.

One network per module; each takes image tensors and returns one feature vector per image. Decoding and
resizing image files is the extractor's job; weights are found and verified by
:mod:`auditor.extractors.weights`.

- :mod:`.inception`: the FID Inception-v3 (pool3, 2048-d), pytorch-fid 0.3.0's network and weights file.
- :mod:`.dinov2`: DINOv2 ViT-B/14 (768-d) and ViT-L/14 (1024-d) CLS features, Meta's hub checkpoints.
"""

from __future__ import annotations

from auditor.extractors.networks.dinov2 import (
    DINOV2_MODELS,
    Dinov2Architecture,
    Dinov2VisionTransformer,
    build_dinov2,
    imagenet_normalize,
)
from auditor.extractors.networks.inception import FID_INCEPTION_WEIGHTS, FIDInceptionV3, build_fid_inception

__all__ = [
    "DINOV2_MODELS",
    "FID_INCEPTION_WEIGHTS",
    "Dinov2Architecture",
    "Dinov2VisionTransformer",
    "FIDInceptionV3",
    "build_dinov2",
    "build_fid_inception",
    "imagenet_normalize",
]
