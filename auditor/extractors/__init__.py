"""Extractor registry: a plain typed table, built by explicit imports.

============================  =========  ==============================================================
name                          modality   features
============================  =========  ==============================================================
``precomputed``               any        the dataset already is an embedding matrix
``tabular``                   table      standardised numeric + one-hot categorical columns
``inception-v3-fid``          image      FID Inception-v3 pool3 (2048), pytorch-fid's preprocessing
``dinov2-vitb14``             image      DINOv2 ViT-B/14 CLS (768), dgm-eval's preprocessing; recommended
``dinov2-vitl14``             image      DINOv2 ViT-L/14 CLS (1024), dgm-eval's preprocessing
``clip-vit-b32``              image      CLIP ViT-B/32 laion2b CLS after ln_post (768), dgm-eval's CLIP
``text-minilm``               text       all-MiniLM-L6-v2 sentence embeddings (384), L2-normalised
============================  =========  ==============================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from auditor.errors import UnknownNameError
from auditor.extractors.base import FeatureExtractor, LoadedDataset
from auditor.extractors.clip import ClipVitB32Extractor
from auditor.extractors.dinov2 import Dinov2VitB14Extractor, Dinov2VitL14Extractor
from auditor.extractors.inception import InceptionV3FidExtractor
from auditor.extractors.precomputed import PrecomputedExtractor
from auditor.extractors.tabular import TabularExtractor
from auditor.extractors.text import MiniLMTextExtractor

EXTRACTORS: dict[str, Callable[[dict[str, Any]], FeatureExtractor]] = {
    "precomputed": PrecomputedExtractor,
    "tabular": TabularExtractor,
    "inception-v3-fid": InceptionV3FidExtractor,
    "dinov2-vitb14": Dinov2VitB14Extractor,
    "dinov2-vitl14": Dinov2VitL14Extractor,
    "clip-vit-b32": ClipVitB32Extractor,
    "text-minilm": MiniLMTextExtractor,
}
RECOMMENDED_IMAGE_EXTRACTOR = "dinov2-vitb14"


def get_extractor(name: str, options: dict[str, Any] | None = None) -> FeatureExtractor:
    if name not in EXTRACTORS:
        raise UnknownNameError(
            f"unknown extractor {name!r}; available: {sorted(EXTRACTORS)}",
            details={"available": sorted(EXTRACTORS)},
        )
    return EXTRACTORS[name](options or {})


__all__ = ["EXTRACTORS", "RECOMMENDED_IMAGE_EXTRACTOR", "FeatureExtractor", "LoadedDataset", "get_extractor"]
