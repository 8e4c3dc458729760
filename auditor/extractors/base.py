"""The extractor interface: every modality (embeddings, tables; images and text next) behind one Protocol.

An extractor turns a loaded dataset into an (n, d) float tensor. ``fit`` sees the real side first, so
extractors whose preprocessing depends on the real data (the tabular encoder's standardisation) fit it
there and apply it unchanged to the synthetic and holdout sides. ``describe`` enters the protocol
fingerprint and the embedding-cache key: name, version, output dim, weights hash, preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from auditor.pipeline.progress import ProgressReporter


@dataclass
class LoadedDataset:
    """A dataset reference resolved and read: what an extractor consumes."""

    side: str  # real | synthetic | holdout
    reference: str
    path: Path
    format: str
    fingerprint: str
    options: dict[str, Any]


@runtime_checkable
class FeatureExtractor(Protocol):
    name: str
    version: str
    modality: str  # embeddings | table | image | text

    def fit(self, real: LoadedDataset) -> None:
        """Fit preprocessing on the real side (a no-op for fixed networks)."""

    def embed(self, dataset: LoadedDataset, progress: ProgressReporter) -> torch.Tensor:
        """(n, d) features of ``dataset``."""

    def describe(self) -> dict[str, Any]:
        """``{"name", "version", "dim", "weights_sha256", "preprocessing"}`` for fingerprints."""
