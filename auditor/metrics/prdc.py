"""Precision and recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020).

Each metric is the mean of a per-sample score; the ``*_scores`` functions expose those scores so the
bootstrap can resample them without touching the features again.
"""

from __future__ import annotations

from torch import Tensor

from auditor.metrics.knn import KnnGraph


def precision_scores(graph: KnnGraph) -> Tensor:
    """Per synthetic sample: 1 if it lies inside at least one real k-NN ball."""
    return (graph.synthetic_real_ball_count > 0).double()


def recall_scores(graph: KnnGraph) -> Tensor:
    """Per real sample: 1 if it lies inside at least one synthetic k-NN ball."""
    return graph.real_in_synthetic_ball.double()


def density_scores(graph: KnnGraph) -> Tensor:
    """Per synthetic sample: the number of real balls containing it, divided by k."""
    return graph.synthetic_real_ball_count.double() / graph.k


def coverage_scores(graph: KnnGraph) -> Tensor:
    """Per real sample: 1 if its own k-NN ball contains at least one synthetic sample."""
    return graph.real_ball_covered.double()


def precision(graph: KnnGraph) -> Tensor:
    return precision_scores(graph).mean()


def recall(graph: KnnGraph) -> Tensor:
    return recall_scores(graph).mean()


def density(graph: KnnGraph) -> Tensor:
    return density_scores(graph).mean()


def coverage(graph: KnnGraph) -> Tensor:
    return coverage_scores(graph).mean()
