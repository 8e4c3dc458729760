"""Tail recall: does the synthetic data still reach the low-density real data?

The real samples with the largest k-NN radius (the top ``tail_fraction``, 10% by default) are the
sparsest regions of the real distribution; under model collapse they are the first to lose synthetic
support. ``tail_recall`` is recall restricted to them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from auditor.metrics.knn import KnnGraph

DEFAULT_TAIL_FRACTION = 0.1


def tail_indices(graph: KnnGraph, tail_fraction: float = DEFAULT_TAIL_FRACTION) -> Tensor:
    """Indices of the ``ceil(tail_fraction * n)`` real samples with the largest k-NN radius."""
    n = graph.real.kth.shape[0]
    count = max(1, math.ceil(tail_fraction * n))
    # stable order so ties are broken by index, deterministically
    order = torch.argsort(graph.real.kth, descending=True, stable=True)
    return order[:count]


def tail_recall_scores(graph: KnnGraph, tail_fraction: float = DEFAULT_TAIL_FRACTION) -> Tensor:
    return graph.real_in_synthetic_ball[tail_indices(graph, tail_fraction)].double()


def tail_recall(graph: KnnGraph, tail_fraction: float = DEFAULT_TAIL_FRACTION) -> Tensor:
    return tail_recall_scores(graph, tail_fraction).mean()
