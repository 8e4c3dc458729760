"""``tabular``: tables (csv, parquet) encoded on the real data's statistics.

Numeric columns are standardised with the real side's mean and standard deviation; categorical columns
(strings, booleans, pandas categoricals) are one-hot encoded on the real side's categories, so a
synthetic category never seen in the real data maps to an all-zero block (and is counted). Both sides
must have the same columns with compatible kinds: anything else is a schema mismatch, reported in full.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from auditor.datasets.readers import read_table
from auditor.errors import DatasetFormatError, SchemaMismatchError
from auditor.extractors.base import LoadedDataset
from auditor.pipeline.progress import ProgressReporter

TABLE_FORMATS = {"csv", "parquet"}


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def read_frame(dataset: LoadedDataset, drop_columns: Sequence[str] = ()) -> pd.DataFrame:
    """A table side as the extractor reads it: the rows ``max_samples``/``seed`` keep, in order (row
    ``i`` is feature row ``i``), without ``drop_columns``."""
    if dataset.format not in TABLE_FORMATS:
        raise DatasetFormatError(
            f"the {dataset.side} dataset {dataset.reference!r} is a {dataset.format} file, not a table; "
            "use --extractor precomputed for embeddings",
            details={"side": dataset.side, "format": dataset.format},
        )
    frame = read_table(dataset.require_path(), dataset.format)
    if dataset.resolved is not None and dataset.resolved.options.max_samples is not None:
        frame = frame.iloc[dataset.resolved.selected_rows(len(frame))].reset_index(drop=True)
    return frame.drop(columns=[c for c in drop_columns if c in frame.columns])


class TabularExtractor:
    name = "tabular"
    version = "1"
    modality = "table"
    accepts = frozenset({"table"})
    cacheable = False  # encoding a table is cheaper than reading a cache entry

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = options or {}
        self.columns: list[str] = []
        self.numeric: dict[str, tuple[float, float]] = {}
        self.categories: dict[str, list[str]] = {}
        self.unseen_categories: dict[str, dict[str, int]] = {}

    @property
    def drop_columns(self) -> list[str]:
        return list(self.options.get("drop_columns") or [])

    def _read(self, dataset: LoadedDataset) -> pd.DataFrame:
        return read_frame(dataset, self.drop_columns)

    def fit(self, real: LoadedDataset) -> None:
        frame = self._read(real)
        self.columns = [str(c) for c in frame.columns]
        for column in frame.columns:
            series = frame[column]
            if _is_numeric(series):
                values = series.to_numpy(dtype=np.float64)
                finite = values[np.isfinite(values)]
                mean = float(finite.mean()) if finite.size else 0.0
                std = float(finite.std()) if finite.size else 1.0
                # A constant column carries no distance information; std 1 keeps it finite.
                self.numeric[str(column)] = (mean, std if std > 0 else 1.0)
            else:
                self.categories[str(column)] = sorted(series.dropna().astype(str).unique().tolist())

    def _check_schema(self, frame: pd.DataFrame, dataset: LoadedDataset) -> None:
        got = [str(c) for c in frame.columns]
        missing = sorted(set(self.columns) - set(got))
        extra = sorted(set(got) - set(self.columns))
        kind_mismatch = sorted(c for c in self.numeric if c in frame.columns and not _is_numeric(frame[c]))
        if missing or extra or kind_mismatch:
            raise SchemaMismatchError(
                f"the {dataset.side} table does not match the real table's schema: "
                f"missing columns {missing}, "
                f"unexpected columns {extra}, numeric in real but not here {kind_mismatch}",
                details={
                    "side": dataset.side,
                    "missing": missing,
                    "extra": extra,
                    "kind_mismatch": kind_mismatch,
                },
            )

    def embed(self, dataset: LoadedDataset, progress: ProgressReporter) -> torch.Tensor:
        frame = self._read(dataset)
        self._check_schema(frame, dataset)
        blocks: list[np.ndarray] = []
        bad_rows = np.zeros(len(frame), dtype=bool)
        for column, (mean, std) in self.numeric.items():
            values = frame[column].to_numpy(dtype=np.float64)
            bad_rows |= ~np.isfinite(values)
            blocks.append(((values - mean) / std)[:, None])
        unseen: dict[str, int] = {}
        for column, categories in self.categories.items():
            index = {category: i for i, category in enumerate(categories)}
            present = frame[column].notna().to_numpy()
            codes = np.full(len(frame), -1, dtype=np.int64)
            mapped = frame[column][present].astype(str).map(index)
            codes[present] = mapped.fillna(-1).to_numpy(dtype=np.int64)
            onehot = np.zeros((len(frame), len(categories)), dtype=np.float64)
            known = codes >= 0
            onehot[np.flatnonzero(known), codes[known]] = 1.0
            unseen_count = int((~known & present).sum())
            if unseen_count:
                unseen[column] = unseen_count
            blocks.append(onehot)
        if bad_rows.any():
            rows = np.flatnonzero(bad_rows)
            raise DatasetFormatError(
                f"the {dataset.side} table has {rows.size} row(s) with missing or non-finite numeric values "
                f"(first: {rows[:5].tolist()}); impute or drop them before auditing",
                details={"side": dataset.side, "bad_rows": int(rows.size)},
            )
        self.unseen_categories[dataset.side] = unseen
        features = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0))
        if features.shape[1] == 0:
            raise SchemaMismatchError(f"the {dataset.side} table has no usable columns")
        return torch.from_numpy(features.astype(np.float32))

    def describe(self) -> dict[str, Any]:
        preprocessing = {
            "numeric": {c: [round(m, 12), round(s, 12)] for c, (m, s) in self.numeric.items()},
            "categorical": self.categories,
        }
        digest = hashlib.sha256(json.dumps(preprocessing, sort_keys=True).encode()).hexdigest()[:16]
        dim = len(self.numeric) + sum(len(c) for c in self.categories.values())
        return {
            "name": self.name,
            "version": self.version,
            "dim": dim,
            "weights_sha256": None,
            "preprocessing": {
                "columns": self.columns,
                "numeric_columns": len(self.numeric),
                "categorical_columns": {c: len(v) for c, v in self.categories.items()},
                "encoding_sha256": digest,
            },
        }
