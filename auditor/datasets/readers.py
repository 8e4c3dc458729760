"""Readers: embeddings (npy, npz, pt, parquet array column) and tables (csv, parquet)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from auditor.errors import DatasetFormatError, TooFewSamplesError

_SHOWN_BAD_ROWS = 5


def _pick(named: dict[str, Any], key: str | None, path: Path, what: str) -> Any:
    if key is not None:
        if key not in named:
            raise DatasetFormatError(
                f"{path.name}: no {what} {key!r}; available: {sorted(named)}",
                details={"available": sorted(named)},
            )
        return named[key]
    if len(named) != 1:
        raise DatasetFormatError(
            f"{path.name} holds {len(named)} {what}s {sorted(named)}; choose one with the 'key' option "
            f"(CLI: --real-key / --synthetic-key)",
            details={"available": sorted(named)},
        )
    return next(iter(named.values()))


def _parquet_embeddings(path: Path, column: str | None) -> np.ndarray:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetFormatError(f"{path.name}: not a readable parquet file ({exc})") from exc
    array_columns = {
        field.name: field.name
        for field in table.schema
        if pa.types.is_list(field.type)
        or pa.types.is_fixed_size_list(field.type)
        or pa.types.is_large_list(field.type)
    }
    if not array_columns and column is None:
        raise DatasetFormatError(
            f"{path.name} has no list/array column to read embeddings from; it looks like a table: "
            "use --extractor tabular",
        )
    name = _pick(array_columns or {c: c for c in table.column_names}, column, path, "array column")
    values = table.column(name).to_pylist()
    try:
        return np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise DatasetFormatError(
            f"{path.name}: column {name!r} is not a rectangular numeric array (rows of unequal length?)"
        ) from exc


def read_embeddings(path: Path, fmt: str, options: dict[str, Any]) -> np.ndarray:
    """A (n, d) float32 array; rejects NaN/inf rows with their indices."""
    key = options.get("key") or options.get("column")
    try:
        if fmt == "npy":
            array = np.load(path, allow_pickle=False)
        elif fmt == "npz":
            with np.load(path, allow_pickle=False) as archive:
                array = _pick({k: archive[k] for k in archive.files}, key, path, "array")
        elif fmt == "pt":
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(loaded, dict):
                loaded = _pick(loaded, key, path, "tensor")
            if not isinstance(loaded, torch.Tensor):
                raise DatasetFormatError(f"{path.name}: expected a tensor, found {type(loaded).__name__}")
            array = loaded.detach().to(torch.float32).numpy()
        elif fmt == "parquet":
            array = _parquet_embeddings(path, key)
        else:
            raise DatasetFormatError(
                f"{path.name}: format {fmt!r} holds no embeddings; use --extractor tabular"
            )
    except DatasetFormatError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError, pickle.UnpicklingError) as exc:
        raise DatasetFormatError(f"{path.name}: cannot read as {fmt} ({exc})") from exc
    return check_embeddings(np.asarray(array), path.name)


def check_embeddings(array: np.ndarray, label: str) -> np.ndarray:
    if array.dtype.kind not in "fiub":
        raise DatasetFormatError(f"{label}: embeddings must be numeric, got dtype {array.dtype}")
    if array.ndim != 2:
        raise DatasetFormatError(
            f"{label}: embeddings must be 2-D (samples x features), got shape {array.shape}",
            details={"shape": list(array.shape)},
        )
    if array.shape[0] == 0:
        raise TooFewSamplesError(f"{label}: the dataset is empty (0 samples)")
    array = array.astype(np.float32, copy=False)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DatasetFormatError(
            f"{label}: {rows.size} row(s) contain NaN or inf (first: {rows[:_SHOWN_BAD_ROWS].tolist()}); "
            "drop or repair them before auditing",
            details={"bad_rows": int(rows.size), "first_bad_rows": rows[:_SHOWN_BAD_ROWS].tolist()},
        )
    return array


def read_table(path: Path, fmt: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError, pa.ArrowInvalid) as exc:
        raise DatasetFormatError(f"{path.name}: cannot read as a {fmt} table ({exc})") from exc
    if fmt not in ("csv", "parquet"):
        raise DatasetFormatError(f"{path.name}: format {fmt!r} is not a table")
    if len(frame) == 0:
        raise TooFewSamplesError(f"{path.name}: the table has no rows")
    return frame
