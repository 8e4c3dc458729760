"""``precomputed``: the dataset already is an embedding matrix (npy, npz, pt, parquet array column)."""

from __future__ import annotations

from typing import Any

import torch

from auditor.datasets.readers import read_embeddings
from auditor.errors import DatasetFormatError
from auditor.extractors.base import LoadedDataset
from auditor.pipeline.progress import ProgressReporter

EMBEDDING_FORMATS = {"npy", "npz", "pt", "parquet"}


class PrecomputedExtractor:
    name = "precomputed"
    version = "1"
    modality = "embeddings"
    accepts = frozenset({"embeddings"})
    cacheable = False  # reading the file is the embedding

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = options or {}
        self.dim: int | None = None

    def fit(self, real: LoadedDataset) -> None:
        pass

    def embed(self, dataset: LoadedDataset, progress: ProgressReporter) -> torch.Tensor:
        if dataset.format not in EMBEDDING_FORMATS:
            raise DatasetFormatError(
                f"the {dataset.side} dataset {dataset.reference!r} is a {dataset.format} file, "
                "not embeddings; "
                "use --extractor tabular for tables",
                details={"side": dataset.side, "format": dataset.format},
            )
        array = read_embeddings(dataset.require_path(), dataset.format, dataset.options)
        if dataset.resolved is not None and dataset.resolved.options.max_samples is not None:
            array = array[dataset.resolved.selected_rows(len(array))]
        self.dim = self.dim or int(array.shape[1])
        return torch.from_numpy(array)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "dim": self.dim,
            "weights_sha256": None,
            "preprocessing": {},
        }
