"""Tail recall and the copy metrics (duplicate_rate, memorization_rate, authenticity) on small exact cases."""

from __future__ import annotations

import pytest
import torch
from helpers.gaussians import generator

from auditor.metrics import memorization as mem
from auditor.metrics import prdc, tails
from auditor.metrics.knn import build_knn_graph

FRESH_MEMORIZATION_MAX = 0.05  # fresh samples: only ~1% of real pairs are within tau


def gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=generator(seed), dtype=torch.float64)


def test_tail_indices_are_the_real_samples_with_the_largest_radii() -> None:
    real = gaussian(200, 4, 1)
    graph = build_knn_graph(real, gaussian(200, 4, 2), 5, dtype=torch.float64)
    idx = tails.tail_indices(graph, 0.1)
    assert idx.shape == (20,)
    threshold = graph.real.kth[idx].min()
    outside = torch.ones(200, dtype=torch.bool)
    outside[idx] = False
    assert (graph.real.kth[outside] <= threshold).all()
    assert tails.tail_indices(graph, 1e-9).shape == (1,)  # at least one sample
    assert tails.tail_indices(graph, 1.0).shape == (200,)


def test_tail_keeps_every_sample_tied_at_the_cutoff_so_row_order_does_not_matter() -> None:
    """k = 1: the mutual nearest neighbours 10 and 12 share the largest radius (2); the tail is both."""
    real = torch.tensor([[0.0], [0.1], [0.2], [0.3], [10.0], [12.0]], dtype=torch.float64)
    synthetic = torch.tensor([[9.9], [10.05], [10.1], [0.15], [0.25]], dtype=torch.float64)
    swapped = real[[0, 1, 2, 3, 5, 4]]
    graph = build_knn_graph(real, synthetic, 1, dtype=torch.float64)
    graph_swapped = build_knn_graph(swapped, synthetic, 1, dtype=torch.float64)
    assert sorted(tails.tail_indices(graph, 1 / 6).tolist()) == [4, 5]  # ceil(6/6) = 1, plus its tie
    assert float(tails.tail_recall(graph, 1 / 6)) == 0.5  # 10 is covered, 12 is not
    assert float(tails.tail_recall(graph_swapped, 1 / 6)) == 0.5


def test_tail_recall_over_all_samples_is_recall() -> None:
    graph = build_knn_graph(gaussian(150, 3, 3), 0.2 + gaussian(170, 3, 4), 4, dtype=torch.float64)
    assert float(tails.tail_recall(graph, 1.0)) == pytest.approx(float(prdc.recall(graph)), abs=1e-15)


def test_tail_recall_drops_when_the_synthetic_data_misses_the_tails() -> None:
    real = gaussian(600, 4, 5)
    fresh = gaussian(600, 4, 6)
    core = gaussian(3000, 4, 7)
    core = core[core.norm(dim=1) < 1.5][:600]
    fresh_graph = build_knn_graph(real, fresh, 5, dtype=torch.float64)
    core_graph = build_knn_graph(real, core, 5, dtype=torch.float64)
    assert float(tails.tail_recall(core_graph)) < 0.5 * float(tails.tail_recall(fresh_graph))


def test_exact_copies_are_memorized_duplicated_and_not_authentic() -> None:
    real = gaussian(300, 8, 8)
    copies = real[:100].clone()
    graph = build_knn_graph(real, torch.cat([copies, copies]), 5, dtype=torch.float64)
    assert float(mem.memorization_rate(graph)) == 1.0  # tau is inclusive: distance 0 always counts
    assert float(mem.duplicate_rate(graph)) == 1.0
    assert float(mem.authenticity(graph)) == 0.0
    assert torch.equal(graph.synthetic_nearest_real_index, torch.arange(100).repeat(2))


def test_fresh_samples_are_rarely_copies_and_mostly_authentic() -> None:
    graph = build_knn_graph(gaussian(800, 8, 9), gaussian(800, 8, 10), 5, dtype=torch.float64)
    assert float(mem.memorization_rate(graph)) < FRESH_MEMORIZATION_MAX
    assert float(mem.duplicate_rate(graph)) < FRESH_MEMORIZATION_MAX
    assert 0.4 < float(mem.authenticity(graph)) < 0.9  # "about 0.5-0.8" per the module docs


def test_copy_threshold_is_the_first_percentile_of_real_nearest_distances() -> None:
    graph = build_knn_graph(gaussian(500, 6, 11), gaussian(50, 6, 12), 3, dtype=torch.float64)
    expected = torch.quantile(graph.real.nearest, 0.01)
    assert float(mem.copy_threshold(graph)) == float(expected)
    assert float((graph.real.nearest <= expected).double().mean()) == pytest.approx(0.01, abs=0.005)
