"""The report's galleries: which samples show what the metrics found, chosen from the per-sample tables.

Pure selection (Arrow tables in, a JSON-ready dict out; no I/O): the score stage builds it with the
audit, it is stored in the report data, and the HTML report lays it out beside the samples' previews
(:mod:`auditor.pipeline.previews`). Every gallery is bounded (:class:`GalleryLimits`), so the samples
to preview are tens to a few hundred whatever the dataset's size.

- ``copies``: the synthetic samples nearest to a real sample (smallest ``nearest_real_distance``), each
  with that real sample, against τ (``copy_threshold_tau``) and against how near fresh real data comes
  (the holdout's nearest-real distances: median, 5th percentile, and the share of holdout samples
  closer than each copy).
- ``outside``: synthetic samples in no real k-NN ball (``in_real_support`` false), farthest first.
- ``missing``: real samples no synthetic ball covers (``covered`` false), grouped by mode, the modes
  that lost the most mass (real share - synthetic share) first, each shown by its typical real samples
  (the smallest ``mode_distance``: nearest its centroid) and its uncovered samples, most missed first.
- ``duplicates``: groups of near-identical synthetic samples: the ``duplicate`` rows joined through
  their twins (``nearest_synthetic_index``), largest groups first.
- ``modes``: every mode's typical real sample (its medoid) and, where the real data has labels, its
  majority label: what the per-mode bars are labelled by.

A sample is named by a reference ``{"side", "index", "key"}`` (its row in the input, as in the tables).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

FORMAT_VERSION = 1
NO_MODE = -1
HOLDOUT_PERCENTILE = 5.0


@dataclass(frozen=True)
class GalleryLimits:
    """How many samples each gallery shows (the previews made are at most their sum)."""

    copies: int = 12
    outside: int = 12
    missing_modes: int = 6
    medoids: int = 3
    missing_per_mode: int = 6
    missing_without_modes: int = 12  # uncovered samples shown when no mode metric ran
    duplicate_groups: int = 8
    duplicate_members: int = 6
    mode_medoids: int = 64  # modes whose bar gets a picture, by real share


def _ref(side: str, index: int, keys: Sequence[str | None]) -> dict[str, Any]:
    return {"side": side, "index": int(index), "key": keys[index] if index < len(keys) else None}


def _column(table: pa.Table, name: str) -> np.ndarray | None:
    """The column as NumPy (floats with NaN for null, bools/ints as is), or None when it is all null."""
    if name not in table.column_names:
        return None
    column = table.column(name)
    if table.num_rows and column.null_count == table.num_rows:
        return None
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None


def _holdout_reference(holdout: pa.Table | None) -> np.ndarray | None:
    if holdout is None:
        return None
    distances = _column(holdout, "nearest_real_distance")
    if distances is None:
        return None
    distances = distances.astype(np.float64)
    distances = distances[np.isfinite(distances)]
    return np.sort(distances) if distances.size else None


def _copies(
    synthetic: pa.Table, keys: Mapping[str, Sequence[str | None]], holdout: np.ndarray | None, limit: int
) -> list[dict[str, Any]]:
    distance = _column(synthetic, "nearest_real_distance")
    nearest = _column(synthetic, "nearest_real_index")
    if distance is None or nearest is None:
        return []
    distance = distance.astype(np.float64)
    ratio = _column(synthetic, "nearest_real_ratio")
    memorized = _column(synthetic, "memorized")
    rows = np.flatnonzero(np.isfinite(distance))
    rows = rows[np.lexsort((rows, distance[rows]))][:limit]
    out = []
    for row in rows.tolist():
        item: dict[str, Any] = {
            "synthetic": _ref("synthetic", row, keys["synthetic"]),
            "real": _ref("real", int(nearest[row]), keys["real"]),
            "distance": float(distance[row]),
            "ratio": _finite(ratio[row]) if ratio is not None else None,
            "memorized": bool(memorized[row]) if memorized is not None else None,
        }
        if holdout is not None:
            # The share of fresh real samples that come closer to the real set than this one: 0 means
            # nearer than any of them, which genuine generalisation rarely is.
            item["holdout_closer"] = float(
                np.searchsorted(holdout, distance[row], side="left") / holdout.size
            )
        out.append(item)
    return out


def _outside(synthetic: pa.Table, keys: Sequence[str | None], limit: int) -> tuple[list[dict[str, Any]], int]:
    support = _column(synthetic, "in_real_support")
    distance = _column(synthetic, "nearest_real_distance")
    if support is None or distance is None:
        return [], 0
    distance = distance.astype(np.float64)
    rows = np.flatnonzero(~support.astype(bool))
    ranked = rows[np.lexsort((rows, -np.nan_to_num(distance[rows], nan=np.inf)))][:limit]
    counts = _column(synthetic, "real_ball_count")
    items = [
        {
            "synthetic": _ref("synthetic", row, keys),
            "distance": _finite(distance[row]),
            "real_ball_count": int(counts[row]) if counts is not None else None,
        }
        for row in ranked.tolist()
    ]
    return items, int(rows.size)


def _by_mode(modes: np.ndarray, mode_distance: np.ndarray | None) -> dict[int, np.ndarray]:
    """Each mode's real rows, nearest its centroid first (ties by row): one sort for every mode, so
    the first rows of a mode are its medoids."""
    rows = np.arange(modes.size)
    distance = mode_distance if mode_distance is not None else np.zeros(modes.size)
    ordered = rows[np.lexsort((rows, np.nan_to_num(distance, nan=np.inf), modes))]
    found, starts = np.unique(modes[ordered], return_index=True)
    return {int(m): part for m, part in zip(found.tolist(), np.split(ordered, starts[1:]), strict=True)}


def _missing(
    real: pa.Table,
    keys: Sequence[str | None],
    real_share: Sequence[float],
    synthetic_share: Sequence[float],
    limits: GalleryLimits,
) -> dict[str, Any]:
    covered = _column(real, "covered")
    modes = _column(real, "mode")
    has_modes = modes is not None and bool(np.any(modes != NO_MODE)) and len(real_share) > 0
    uncovered = ~covered.astype(bool) if covered is not None else None
    total = int(uncovered.sum()) if uncovered is not None else None
    gap = _column(real, "nearest_synthetic_distance")
    gap = gap.astype(np.float64) if gap is not None else None

    def most_missed(rows: np.ndarray, limit: int) -> list[dict[str, Any]]:
        if gap is not None:
            rows = rows[np.lexsort((rows, -np.nan_to_num(gap[rows], nan=np.inf)))]
        return [_ref("real", row, keys) for row in rows[:limit].tolist()]

    if not has_modes or modes is None:
        if uncovered is None or not total:
            return {"uncovered": total, "groups": []}
        rows = np.flatnonzero(uncovered)
        group = {
            "mode": None,
            "uncovered": total,
            "medoids": [],
            "samples": most_missed(rows, limits.missing_without_modes),
        }
        return {"uncovered": total, "groups": [group]}
    members = _by_mode(modes, _column(real, "mode_distance"))
    lost = [
        (real_share[m] - synthetic_share[m], m) for m in range(min(len(real_share), len(synthetic_share)))
    ]
    groups = []
    for mass, m in sorted(lost, key=lambda pair: (-pair[0], pair[1])):
        rows = members.get(m, np.array([], dtype=np.int64))
        missed = rows[uncovered[rows]] if uncovered is not None else rows[:0]
        if mass <= 0 or (uncovered is not None and not missed.size):
            continue
        groups.append(
            {
                "mode": m,
                "real_share": float(real_share[m]),
                "synthetic_share": float(synthetic_share[m]),
                "uncovered": int(missed.size) if uncovered is not None else None,
                "size": int(rows.size),
                "medoids": [_ref("real", row, keys) for row in rows[: limits.medoids].tolist()],
                "samples": most_missed(np.sort(missed), limits.missing_per_mode),
            }
        )
        if len(groups) == limits.missing_modes:
            break
    return {"uncovered": total, "groups": groups}


def _duplicate_groups(
    synthetic: pa.Table, keys: Sequence[str | None], limits: GalleryLimits
) -> dict[str, Any]:
    flags = _column(synthetic, "duplicate")
    if flags is None:
        return {"total": None, "groups": []}
    flagged = np.flatnonzero(flags.astype(bool))
    twins = synthetic.column("nearest_synthetic_index").to_pylist()
    distance = _column(synthetic, "nearest_synthetic_distance")
    parent = {int(row): int(row) for row in flagged}

    def root(row: int) -> int:
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = parent[row]
        return row

    for row in flagged.tolist():
        twin = twins[row]
        if twin is not None and twin in parent:
            a, b = root(row), root(int(twin))
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for row in flagged.tolist():
        members.setdefault(root(row), []).append(row)
    ranked = sorted(members.values(), key=lambda group: (-len(group), group[0]))
    groups = [
        {
            "size": len(group),
            "distance": _finite(min(distance[row] for row in group)) if distance is not None else None,
            "members": [_ref("synthetic", row, keys) for row in group[: limits.duplicate_members]],
        }
        for group in ranked[: limits.duplicate_groups]
    ]
    return {"total": int(flagged.size), "groups": groups}


def _mode_labels(
    real: pa.Table,
    keys: Sequence[str | None],
    real_share: Sequence[float],
    labels: Sequence[str | None] | None,
    limits: GalleryLimits,
) -> list[dict[str, Any]]:
    modes = _column(real, "mode")
    if modes is None or not len(real_share) or not np.any(modes != NO_MODE):
        return []
    members = _by_mode(modes, _column(real, "mode_distance"))
    pictured = set(sorted(range(len(real_share)), key=lambda m: (-real_share[m], m))[: limits.mode_medoids])
    out = []
    for m in range(len(real_share)):
        entry: dict[str, Any] = {"mode": m, "medoid": None, "label": None, "label_share": None}
        rows = members.get(m, np.array([], dtype=np.int64))
        if rows.size and m in pictured:
            entry["medoid"] = _ref("real", int(rows[0]), keys)
        if labels is not None:
            named = [labels[row] for row in rows.tolist() if labels[row] is not None]
            if named:
                values, counts = np.unique(np.asarray(named, dtype=object).astype(str), return_counts=True)
                best = int(np.argmax(counts))  # ties: the first label in sorted order
                entry["label"], entry["label_share"] = str(values[best]), float(counts[best] / len(named))
        out.append(entry)
    return out


def build_galleries(
    tables: Mapping[str, pa.Table],
    *,
    tau: float | None = None,
    mode_real_share: Sequence[float] = (),
    mode_synthetic_share: Sequence[float] = (),
    real_labels: Sequence[str | None] | None = None,
    limits: GalleryLimits | None = None,
) -> dict[str, Any]:
    """Every gallery from the per-sample tables (:func:`auditor.samples.build_tables`).

    ``real_labels``: the label of every real row (None where unknown), for the modes' majority labels.
    Galleries whose columns were not computed (no k-NN or mode metric) come out empty.
    """
    limits = limits or GalleryLimits()
    keys = {side: table.column("key").to_pylist() for side, table in tables.items()}
    synthetic, real = tables["synthetic"], tables["real"]
    holdout = _holdout_reference(tables.get("holdout"))
    outside, outside_total = _outside(synthetic, keys["synthetic"], limits.outside)
    reference = None
    if holdout is not None:
        reference = {
            "median": float(np.median(holdout)),
            "p05": float(np.percentile(holdout, HOLDOUT_PERCENTILE)),
            "n": int(holdout.size),
        }
    return {
        "version": FORMAT_VERSION,
        "tau": tau,
        "holdout_nearest": reference,
        "copies": _copies(synthetic, keys, holdout, limits.copies),
        "memorized": _count(synthetic, "memorized"),
        "outside": outside,
        "outside_total": outside_total if _column(synthetic, "in_real_support") is not None else None,
        "missing": _missing(real, keys["real"], mode_real_share, mode_synthetic_share, limits),
        "duplicates": _duplicate_groups(synthetic, keys["synthetic"], limits),
        "modes": _mode_labels(real, keys["real"], mode_real_share, real_labels, limits),
    }


def _count(table: pa.Table, name: str) -> int | None:
    values = _column(table, name)
    return int(values.astype(bool).sum()) if values is not None else None


def gallery_refs(galleries: Mapping[str, Any]) -> Iterator[tuple[str, int]]:
    """``(side, index)`` of every sample the galleries show, most telling first (duplicates included):
    what to preview, in the order a bound on the previews cuts."""
    for pair in galleries.get("copies") or []:
        yield from ((pair[s]["side"], pair[s]["index"]) for s in ("synthetic", "real"))
    for item in galleries.get("outside") or []:
        yield item["synthetic"]["side"], item["synthetic"]["index"]
    for group in (galleries.get("missing") or {}).get("groups") or []:
        for ref in [*group["medoids"], *group["samples"]]:
            yield ref["side"], ref["index"]
    for group in (galleries.get("duplicates") or {}).get("groups") or []:
        yield from ((ref["side"], ref["index"]) for ref in group["members"])
    for entry in galleries.get("modes") or []:
        if entry.get("medoid") is not None:
            yield entry["medoid"]["side"], entry["medoid"]["index"]


__all__ = ["FORMAT_VERSION", "GalleryLimits", "build_galleries", "gallery_refs"]
