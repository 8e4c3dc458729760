"""What a synthetic table lost or invented, column by column, from the raw tables.

Pure computation (two DataFrames in, a JSON-ready dict out), for the report of an audit of tables:

- ``columns_lost`` / ``columns_invented``: columns of the real table the synthetic one lacks, and the
  reverse (the tabular extractor refuses such pairs; this names them anyway).
- ``categories``: per categorical column (strings, booleans, categoricals, and integer columns with at
  most :data:`MAX_LEVELS` distinct real values, such as a 0/1 target), the categories whose synthetic
  share is below :data:`~auditor.metrics.MIN_MODE_SHARE` of their real share (``lost`` when the synthetic
  table has none: "target = malignant: real 37%, synthetic 0%"), and the ``invented`` ones the real table
  never holds.
- ``ranges``: per numeric column, the stretches of the real distribution the synthetic values (almost)
  never reach: the real deciles whose synthetic share is below the same fraction of their real share,
  adjacent ones merged. ``outside``: the share of synthetic values below or above every real value.

Only aggregates of the real data appear: a category is named only when at least
:data:`MIN_CATEGORY_ROWS` real rows hold it (a rarer value could single a person out), and a range is
given by real quantiles with its outer ends open ("≥ 21.3"), never by the real minimum or maximum.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from auditor.metrics import MIN_MODE_SHARE

FORMAT_VERSION = 1
MIN_CATEGORY_ROWS = 5
MAX_LEVELS = 12
RANGE_BINS = 10
MAX_PER_COLUMN = 10
MAX_FINDINGS = 40


def _is_categorical(series: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return True
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = values[np.isfinite(values)]
    return (
        bool(values.size)
        and bool(np.all(values == np.round(values)))
        and np.unique(values).size <= MAX_LEVELS
    )


def _labels(series: pd.Series) -> pd.Series:
    """Category names as the report shows them: integral floats as integers (a 0/1 column read with a
    missing value is float), missing values dropped."""
    present = series.dropna()
    if pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present):
        numbers = present.to_numpy(dtype=np.float64)
        if np.all(numbers == np.round(numbers)):
            return pd.Series(numbers.astype(np.int64).astype(str))
    return present.astype(str)


def _shares(series: pd.Series, total: int) -> tuple[dict[str, int], dict[str, float]]:
    counts = {str(k): int(v) for k, v in _labels(series).value_counts().items()}
    return counts, {k: v / max(total, 1) for k, v in counts.items()}


def _category_findings(column: str, real: pd.Series, synthetic: pd.Series) -> list[dict[str, Any]]:
    real_counts, real_share = _shares(real, len(real))
    synth_counts, synth_share = _shares(synthetic, len(synthetic))
    found: list[dict[str, Any]] = []
    for category, count in real_counts.items():
        q = synth_share.get(category, 0.0)
        if count >= MIN_CATEGORY_ROWS and q < MIN_MODE_SHARE * real_share[category]:
            status = "lost" if synth_counts.get(category, 0) == 0 else "starved"
            found.append(
                {
                    "column": column,
                    "category": category,
                    "status": status,
                    "real_share": real_share[category],
                    "synthetic_share": q,
                }
            )
    found.sort(key=lambda item: (-item["real_share"], item["category"]))
    invented: list[dict[str, Any]] = [
        {
            "column": column,
            "category": category,
            "status": "invented",
            "real_share": 0.0,
            "synthetic_share": synth_share[category],
        }
        for category in synth_counts
        if category not in real_counts
    ]
    invented.sort(key=lambda item: (-item["synthetic_share"], item["category"]))
    return [*found[:MAX_PER_COLUMN], *invented[:MAX_PER_COLUMN]]


def _numbers(series: pd.Series) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values[np.isfinite(values)]


def _range_findings(column: str, real: pd.Series, synthetic: pd.Series) -> tuple[list[dict[str, Any]], Any]:
    r, s = _numbers(real), _numbers(synthetic)
    if r.size < MIN_CATEGORY_ROWS or not s.size:
        return [], None
    edges = np.unique(np.quantile(r, np.linspace(0.0, 1.0, RANGE_BINS + 1)))
    if edges.size < 2:
        return [], None  # a constant column has no ranges to miss
    # Bin i holds [edges[i], edges[i+1]); the last bin is closed on the right.
    inner = edges[1:-1]
    real_bins = np.bincount(np.searchsorted(inner, r, side="right"), minlength=edges.size - 1)
    within = s[(s >= edges[0]) & (s <= edges[-1])]
    synth_bins = np.bincount(np.searchsorted(inner, within, side="right"), minlength=edges.size - 1)
    p, q = real_bins / r.size, synth_bins / s.size
    missed = (real_bins >= MIN_CATEGORY_ROWS) & (q < MIN_MODE_SHARE * p)
    found: list[dict[str, Any]] = []
    i = 0
    last = edges.size - 2
    while i <= last:
        if not missed[i]:
            i += 1
            continue
        j = i
        while j + 1 <= last and missed[j + 1]:
            j += 1
        found.append(
            {
                "column": column,
                # Open outer ends: the real minimum and maximum are single rows' values.
                "low": None if i == 0 else float(edges[i]),
                "high": None if j == last else float(edges[j + 1]),
                "real_share": float(p[i : j + 1].sum()),
                "synthetic_share": float(q[i : j + 1].sum()),
            }
        )
        i = j + 1
    below, above = float(np.mean(s < edges[0])), float(np.mean(s > edges[-1]))
    outside = {"column": column, "below": below, "above": above} if below or above else None
    found.sort(key=lambda item: -item["real_share"])
    return found[:MAX_PER_COLUMN], outside


def table_drift(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, Any]:
    """The columns, categories and numeric ranges ``synthetic`` lost or invented relative to ``real``."""
    real_columns = [str(c) for c in real.columns]
    synth_columns = [str(c) for c in synthetic.columns]
    real, synthetic = real.set_axis(real_columns, axis=1), synthetic.set_axis(synth_columns, axis=1)
    categories: list[dict[str, Any]] = []
    ranges: list[dict[str, Any]] = []
    outside: list[dict[str, Any]] = []
    for column in real_columns:
        if column not in synthetic.columns:
            continue
        if _is_categorical(real[column]):
            categories.extend(_category_findings(column, real[column], synthetic[column]))
        else:
            found, beyond = _range_findings(column, real[column], synthetic[column])
            ranges.extend(found)
            if beyond is not None:
                outside.append(beyond)
    categories.sort(key=lambda item: (item["status"] == "invented", -item["real_share"]))
    ranges.sort(key=lambda item: -item["real_share"])
    outside.sort(key=lambda item: -(item["below"] + item["above"]))
    return {
        "version": FORMAT_VERSION,
        "rows": {"real": len(real), "synthetic": len(synthetic)},
        "min_category_rows": MIN_CATEGORY_ROWS,
        "columns_lost": [c for c in real_columns if c not in synthetic.columns],
        "columns_invented": [c for c in synth_columns if c not in real.columns],
        "categories": categories[:MAX_FINDINGS],
        "ranges": ranges[:MAX_FINDINGS],
        "outside": outside[:MAX_FINDINGS],
        "truncated": max(len(categories), len(ranges), len(outside)) > MAX_FINDINGS,
    }


__all__ = ["MAX_LEVELS", "MIN_CATEGORY_ROWS", "RANGE_BINS", "table_drift"]
