"""Per-sample evidence: which samples make the neighbour and mode metrics what they are.

Pure computation, tensors in, columns out: the :class:`~auditor.metrics.knn.KnnGraph` the score stage
built and the mode labels it assigned become one NumPy column per quantity and side, with one row per
sample *in the order of the input* (the graph's rows are in canonical order,
:mod:`auditor.metrics.canonical`; ``order[i]`` is the input row of canonical row ``i``). No feature is
read again.

Every flag is the per-sample score the metric itself averages (``prdc.precision_scores``,
``memorization.memorization_scores``, ...), so ``mean(in_real_support) == precision``,
``mean(memorized) == memorization_rate``, ``mean(covered) == coverage``, ``mean(real_ball_count) / k ==
density``, ``mean(authentic) == authenticity``, ``mean(in_synthetic_manifold[tail]) == tail_recall``,
exactly, and the holdout table gives the baselines the same way.

What was not computed is ``None`` (a null column): the neighbour columns when no kNN metric was
requested (any one of them builds the whole graph, and then every neighbour column is filled); ``mode``
is -1 when no mode metric was requested, and then ``mode_distance`` (a real sample's distance to its
mode's k-means centroid: the smallest in a mode are its most typical samples, what the report shows a
mode by) is null. ``nearest_synthetic_index`` is the twin: another sample of the
same set at exactly ``nearest_synthetic_distance`` (one of them, where several are).

``nearest_real_ratio`` = ``nearest_real_distance`` / that real sample's own nearest-real distance (the
quantity authenticity compares with 1): ``inf`` when the real sample has an exact duplicate (own
distance 0) and this one is not on it, ``NaN`` when both are 0. ``authentic`` is the metric's own
score (decided on squared distances, so it is exact where the ratio is rounded to 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from auditor.metrics import memorization as mem
from auditor.metrics import prdc, tails
from auditor.metrics.knn import KnnGraph

# Column name -> Arrow type name, in table order. "synthetic" rows describe the synthetic set, or the
# holdout set in the holdout table (there "synthetic" means the holdout set: its twin is another
# holdout sample). Keys are filled in by the score stage, which knows the datasets.
SYNTHETIC_COLUMNS: dict[str, str] = {
    "index": "int64",
    "key": "string",
    "nearest_real_index": "int64",
    "nearest_real_key": "string",
    "nearest_real_distance": "float64",
    "nearest_real_ratio": "float64",
    "real_ball_count": "int64",
    "in_real_support": "bool",
    "authentic": "bool",
    "memorized": "bool",
    "nearest_synthetic_index": "int64",
    "nearest_synthetic_key": "string",
    "nearest_synthetic_distance": "float64",
    "duplicate": "bool",
    "mode": "int64",
}
REAL_COLUMNS: dict[str, str] = {
    "index": "int64",
    "key": "string",
    "covered": "bool",
    "in_synthetic_manifold": "bool",
    "nearest_synthetic_distance": "float64",
    "knn_radius": "float64",
    "tail": "bool",
    "mode": "int64",
    "mode_distance": "float64",
}
COLUMNS = {"synthetic": SYNTHETIC_COLUMNS, "real": REAL_COLUMNS, "holdout": SYNTHETIC_COLUMNS}
NO_MODE = -1

Columns = dict[str, np.ndarray | None]


@dataclass(frozen=True)
class SideRows:
    """One side as the score stage read it: ``order[i]`` is the input row of canonical row ``i``;
    ``labels`` the mode of each canonical row (None: no mode metric requested), ``mode_distance`` its
    distance to that mode's centroid (real side only)."""

    order: Tensor
    labels: Tensor | None = None
    mode_distance: Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.order.numel())


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _in_input_order(rows: SideRows, canonical: Tensor) -> np.ndarray:
    """Canonical row ``i``'s value at input row ``order[i]``."""
    values = _numpy(canonical)
    out = np.empty_like(values)
    out[_numpy(rows.order)] = values
    return out


def _modes(rows: SideRows) -> np.ndarray:
    if rows.labels is None:
        return np.full(rows.n, NO_MODE, dtype=np.int64)
    return _in_input_order(rows, rows.labels.to(torch.int64))


def _flag(scores: Tensor) -> Tensor:
    return scores > 0.5  # the scores are 0.0 / 1.0 exactly


def synthetic_columns(graph: KnnGraph | None, rows: SideRows, real: SideRows) -> Columns:
    """The synthetic side of ``graph`` (or the holdout side of the holdout graph), in input order."""
    columns: Columns = dict.fromkeys(SYNTHETIC_COLUMNS)
    columns["index"] = np.arange(rows.n, dtype=np.int64)
    columns["mode"] = _modes(rows)
    if graph is None:
        return columns
    nearest_real = graph.synthetic_nearest_real_index
    distance = graph.synthetic_nearest_real.double()
    with np.errstate(divide="ignore", invalid="ignore"):  # inf and NaN are the documented answers
        ratio = _numpy(distance) / _numpy(graph.real.nearest.double()[nearest_real])
    canonical = {
        # The real neighbour's input row: real's canonical position mapped through real's order.
        "nearest_real_index": real.order[nearest_real],
        "nearest_real_distance": distance,
        "nearest_real_ratio": torch.from_numpy(ratio),
        "real_ball_count": graph.synthetic_real_ball_count.to(torch.int64),
        "in_real_support": _flag(prdc.precision_scores(graph)),
        "authentic": _flag(mem.authenticity_scores(graph)),
        "memorized": _flag(mem.memorization_scores(graph)),
        "nearest_synthetic_distance": graph.synthetic.nearest.double(),
        **(
            {"nearest_synthetic_index": rows.order[graph.synthetic.nearest_index]}
            if graph.synthetic.nearest_index is not None
            else {}
        ),
        "duplicate": _flag(mem.duplicate_scores(graph)),
    }
    for name, values in canonical.items():
        columns[name] = _in_input_order(rows, values)
    return columns


def real_columns(graph: KnnGraph | None, rows: SideRows, *, tail_fraction: float) -> Columns:
    """The real side of ``graph``, in input order."""
    columns: Columns = dict.fromkeys(REAL_COLUMNS)
    columns["index"] = np.arange(rows.n, dtype=np.int64)
    columns["mode"] = _modes(rows)
    if rows.mode_distance is not None:
        columns["mode_distance"] = _in_input_order(rows, rows.mode_distance.double())
    if graph is None:
        return columns
    tail = torch.zeros(rows.n, dtype=torch.bool, device=graph.real.kth_sq.device)
    tail[tails.tail_indices(graph, tail_fraction)] = True
    canonical = {
        "covered": _flag(prdc.coverage_scores(graph)),
        "in_synthetic_manifold": _flag(prdc.recall_scores(graph)),
        "nearest_synthetic_distance": graph.real_nearest_synthetic.double(),
        "knn_radius": graph.real.kth.double(),
        "tail": tail,
    }
    for name, values in canonical.items():
        columns[name] = _in_input_order(rows, values)
    return columns


def sample_columns(
    graph: KnnGraph | None,
    holdout_graph: KnnGraph | None,
    rows: dict[str, SideRows],
    *,
    tail_fraction: float,
) -> dict[str, Columns]:
    """Every side's columns: ``synthetic``, ``real`` and (with ``rows["holdout"]``) ``holdout``."""
    out = {
        "synthetic": synthetic_columns(graph, rows["synthetic"], rows["real"]),
        "real": real_columns(graph, rows["real"], tail_fraction=tail_fraction),
    }
    if "holdout" in rows:
        out["holdout"] = synthetic_columns(holdout_graph, rows["holdout"], rows["real"])
    return out


__all__ = [
    "COLUMNS",
    "NO_MODE",
    "REAL_COLUMNS",
    "SYNTHETIC_COLUMNS",
    "Columns",
    "SideRows",
    "real_columns",
    "sample_columns",
    "synthetic_columns",
]
