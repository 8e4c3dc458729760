"""Copies and near-copies: ``duplicate_rate``, ``memorization_rate`` and ``authenticity``.

``tau`` is the 1st percentile of the real-to-nearest-other-real distances: a distance so small that only
1% of real samples have a neighbour that close. A synthetic sample within ``tau`` (inclusive, so exact
copies always count) of another synthetic sample is a duplicate; within ``tau`` of a real sample it is a
near-copy of the training data.

``authenticity`` (Alaa et al. 2022): a synthetic sample is authentic unless it is closer to its nearest
real sample than that real sample is to its own nearest real neighbour. Fresh samples from the real
distribution score about 0.5-0.8, so compare with the holdout baseline, not with 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from auditor.metrics.knn import KnnGraph

TAU_QUANTILE = 0.01


def copy_threshold(graph: KnnGraph) -> Tensor:
    """``tau``: the 1st percentile of real nearest-neighbour distances."""
    return torch.quantile(graph.real.nearest.double(), TAU_QUANTILE)


def duplicate_scores(graph: KnnGraph) -> Tensor:
    return (graph.synthetic.nearest.double() <= copy_threshold(graph)).double()


def memorization_scores(graph: KnnGraph) -> Tensor:
    return (graph.synthetic_nearest_real.double() <= copy_threshold(graph)).double()


def authenticity_scores(graph: KnnGraph) -> Tensor:
    own_gap_sq = graph.real.nearest_sq[graph.synthetic_nearest_real_index]
    return (graph.synthetic_nearest_real_sq >= own_gap_sq).double()


def duplicate_rate(graph: KnnGraph) -> Tensor:
    return duplicate_scores(graph).mean()


def memorization_rate(graph: KnnGraph) -> Tensor:
    return memorization_scores(graph).mean()


def authenticity(graph: KnnGraph) -> Tensor:
    return authenticity_scores(graph).mean()
