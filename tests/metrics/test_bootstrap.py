"""Percentile-bootstrap helpers: coverage of the point, bias correction, clamping, reproducibility."""

from __future__ import annotations

import pytest
import torch
from helpers.gaussians import generator

from auditor.metrics.bootstrap import (
    bias_corrected_interval,
    bootstrap_means,
    percentile_interval,
    resample_indices,
    resample_weights,
)

CENTRE_ATOL = 1e-12  # midpoint of a bias-corrected interval of symmetric replicates vs the point
NORMAL_WIDTH_RTOL = 0.15  # 95% bootstrap width of a mean vs 2 x 1.96 x s / sqrt(n), 2000 replicates


@pytest.mark.parametrize("kind", ["normal", "bernoulli", "skewed"])
def test_percentile_interval_of_bootstrap_means_contains_the_sample_mean(kind: str) -> None:
    gen = generator(1)
    scores = {
        "normal": torch.randn(400, generator=gen, dtype=torch.float64),
        "bernoulli": (torch.rand(400, generator=gen) < 0.3).double(),
        "skewed": torch.randn(400, generator=gen, dtype=torch.float64).exp(),
    }[kind]
    low, high = percentile_interval(bootstrap_means(scores, 500, generator(2)))
    point = float(scores.mean())
    assert low < point < high, (low, point, high)


def test_bootstrap_interval_width_matches_the_normal_theory_width() -> None:
    scores = torch.randn(1000, generator=generator(3), dtype=torch.float64)
    low, high = percentile_interval(bootstrap_means(scores, 2000, generator(4)), 0.95)
    expected = 2 * 1.959964 * float(scores.std()) / 1000**0.5
    assert high - low == pytest.approx(expected, rel=NORMAL_WIDTH_RTOL), (high - low, expected)


def test_bias_corrected_interval_is_centred_on_the_point() -> None:
    # symmetric replicates around 5.0, while the point estimate is 3.0: a bias of +2
    offsets = torch.linspace(-1.0, 1.0, 201, dtype=torch.float64)
    low, high = bias_corrected_interval(5.0 + offsets, 3.0, 0.9)
    assert (low + high) / 2 == pytest.approx(3.0, abs=CENTRE_ATOL), (low, high)
    raw_low, raw_high = percentile_interval(5.0 + offsets, 0.9)
    assert high - low == pytest.approx(raw_high - raw_low, abs=CENTRE_ATOL)  # spread kept
    assert not raw_low <= 3.0 <= raw_high  # the raw interval missed the point entirely


def test_bias_corrected_interval_is_clamped_to_the_metric_range() -> None:
    replicates = torch.linspace(-0.5, 0.5, 101, dtype=torch.float64)
    assert bias_corrected_interval(replicates, 0.05, lower=0.0) == (0.0, pytest.approx(0.05 + 0.475))
    low, high = bias_corrected_interval(replicates + 1.0, 0.98, lower=0.0, upper=1.0)
    assert 0.0 <= low <= high <= 1.0 and high == 1.0


def test_resampling_is_reproducible_with_a_seed() -> None:
    scores = torch.rand(50, generator=generator(5), dtype=torch.float64)
    assert torch.equal(bootstrap_means(scores, 30, generator(9)), bootstrap_means(scores, 30, generator(9)))
    assert not torch.equal(
        bootstrap_means(scores, 30, generator(9)), bootstrap_means(scores, 30, generator(10))
    )
    assert torch.equal(resample_indices(20, 4, generator(9)), resample_indices(20, 4, generator(9)))


def test_resample_weights_are_the_counts_of_the_same_indices() -> None:
    idx = resample_indices(40, 6, generator(11))
    weights = resample_weights(40, 6, generator(11))
    assert weights.shape == (6, 40)
    for row in range(6):
        assert torch.equal(weights[row], torch.bincount(idx[row], minlength=40).double())
    assert torch.equal(weights.sum(dim=1), torch.full((6,), 40.0, dtype=torch.float64))


def test_constant_scores_give_a_zero_width_interval_at_the_point() -> None:
    low, high = percentile_interval(bootstrap_means(torch.full((30,), 0.25), 100, generator(12)))
    assert low == high == pytest.approx(0.25, abs=1e-15)
