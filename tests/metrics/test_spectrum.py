"""Effective rank (Roy & Vetterli 2007) of known spectra."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.gaussians import generator, spd_matrix

from auditor.metrics.gaussian import GaussianStats
from auditor.metrics.spectrum import effective_rank, effective_rank_ratio, entropy_of, normalized_spectrum

EFFECTIVE_RANK_RTOL = 1e-10  # exp(entropy) of an exactly flat spectrum, float64 eigh


@pytest.mark.parametrize("d", [1, 7, 64])
def test_effective_rank_of_identity_is_d(d: int) -> None:
    value = float(effective_rank(torch.eye(d, dtype=torch.float64)))
    assert value == pytest.approx(d, rel=EFFECTIVE_RANK_RTOL), value


@pytest.mark.parametrize(("r", "d"), [(1, 10), (5, 32), (31, 32)])
def test_effective_rank_of_rank_r_isotropic_covariance_is_r(r: int, d: int) -> None:
    eigenvalues = torch.zeros(d, dtype=torch.float64)
    eigenvalues[:r] = 2.5
    cov = spd_matrix(eigenvalues, generator(r * d))  # in a random basis: not diagonal
    value = float(effective_rank(cov))
    assert value == pytest.approx(r, rel=EFFECTIVE_RANK_RTOL), value


def test_effective_rank_is_scale_invariant_and_below_d() -> None:
    cov = spd_matrix(torch.linspace(0.01, 3.0, 20, dtype=torch.float64), generator(3))
    value = float(effective_rank(cov))
    assert 1.0 < value < 20.0
    assert float(effective_rank(1e6 * cov)) == pytest.approx(value, rel=1e-10)


def test_effective_rank_ratio_of_a_projection_onto_half_the_directions() -> None:
    x = torch.randn(4000, 16, generator=generator(4), dtype=torch.float64)
    projected = x.clone()
    projected[:, 8:] = 0.0
    real, synthetic = GaussianStats.from_features(x).cov, GaussianStats.from_features(projected).cov
    assert float(effective_rank_ratio(real, synthetic)) == pytest.approx(0.5, abs=0.02)


def test_normalized_spectrum_is_descending_non_negative_and_sums_to_one() -> None:
    cov = spd_matrix(torch.tensor([3.0, 0.0, 1.0, 2.0], dtype=torch.float64), generator(5))
    spectrum = normalized_spectrum(cov)
    assert float(spectrum.sum()) == pytest.approx(1.0, rel=1e-12)
    assert (spectrum >= 0).all()
    assert torch.all(spectrum[:-1] >= spectrum[1:])
    assert torch.equal(
        normalized_spectrum(torch.zeros(3, 3, dtype=torch.float64)), torch.zeros(3, dtype=torch.float64)
    )


def test_entropy_ignores_zero_probabilities() -> None:
    p = torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64)
    assert float(entropy_of(p)) == pytest.approx(math.log(2.0), rel=1e-12)
