"""The extractor interface: every modality (embeddings, tables; images and text next) behind one Protocol.

An extractor turns a loaded dataset into an (n, d) float tensor. ``fit`` sees the real side first, so
extractors whose preprocessing depends on the real data (the tabular encoder's standardisation) fit it
there and apply it unchanged to the synthetic and holdout sides. ``describe`` enters the protocol
fingerprint and the embedding-cache key: name, version, output dim, weights hash, preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from auditor.pipeline.progress import ProgressReporter

if TYPE_CHECKING:
    from auditor.datasets.refs import ResolvedDataset


@dataclass
class LoadedDataset:
    """A dataset reference resolved (checked, listed, fingerprinted; samples read lazily).

    ``path`` is the local file for single-file formats (embeddings, tables, text files), None for
    image folders, archives and shards, which extractors read through ``resolved.image_samples()``.
    """

    side: str  # real | synthetic | holdout
    reference: str
    path: Path | None
    format: str
    fingerprint: str
    options: dict[str, Any]
    resolved: ResolvedDataset | None = None

    @property
    def modality(self) -> str | None:
        return self.resolved.modality if self.resolved is not None else None

    def require_path(self) -> Path:
        if self.path is None:
            raise ValueError(f"{self.reference} is not a single local file")
        return self.path


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
