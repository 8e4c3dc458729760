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
    """Indices of the ``ceil(tail_fraction * n)`` real samples with the largest k-NN radius.

    Samples tied with the smallest selected radius are all included: ties are common (with k = 1 a
    mutual nearest-neighbour pair shares its radius), and breaking them by index would make the tail,
    and so ``tail_recall``, depend on the order of the rows.
    """
    radii = graph.real.kth_sq  # squared, exact: equal radii are equal bits
    count = max(1, math.ceil(tail_fraction * radii.shape[0]))
    order = torch.argsort(radii, descending=True, stable=True)
    count = int((radii >= radii[order[count - 1]]).sum())
    return order[:count]


def tail_recall_scores(graph: KnnGraph, tail_fraction: float = DEFAULT_TAIL_FRACTION) -> Tensor:
    return graph.real_in_synthetic_ball[tail_indices(graph, tail_fraction)].double()


def tail_recall(graph: KnnGraph, tail_fraction: float = DEFAULT_TAIL_FRACTION) -> Tensor:
    return tail_recall_scores(graph, tail_fraction).mean()
