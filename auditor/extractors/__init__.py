"""Extractor registry: a plain typed table, built by explicit imports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from auditor.errors import UnknownNameError
from auditor.extractors.base import FeatureExtractor, LoadedDataset
from auditor.extractors.precomputed import PrecomputedExtractor
from auditor.extractors.tabular import TabularExtractor

EXTRACTORS: dict[str, Callable[[dict[str, Any]], FeatureExtractor]] = {
    "precomputed": PrecomputedExtractor,
    "tabular": TabularExtractor,
}


def get_extractor(name: str, options: dict[str, Any] | None = None) -> FeatureExtractor:
    if name not in EXTRACTORS:
        raise UnknownNameError(
            f"unknown extractor {name!r}; available: {sorted(EXTRACTORS)}",
            details={"available": sorted(EXTRACTORS)},
        )
    return EXTRACTORS[name](options or {})


__all__ = ["EXTRACTORS", "FeatureExtractor", "LoadedDataset", "get_extractor"]
