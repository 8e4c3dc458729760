"""Vendi score: agreement with vendi-score (cosine kernel) on both sides of n = d, and weighting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.gaussians import generator
from vendi_score import vendi

from auditor.metrics.vendi import vendi_ratio, vendi_score, vendi_scores

VENDI_RTOL = 1e-8  # eigenvalues of n x n vs d x d Gram matrices, float64
DUPLICATION_RTOL = 1e-10  # integer weights vs explicit copies (the same eigenvalues, other matrix)

# vendi-score 0.0.3 touches scipy.sparse.csr, a namespace deprecated in SciPy 1.17.
pytestmark = pytest.mark.filterwarnings("ignore:Please import `csr_matrix`:DeprecationWarning")

# n < d uses the n x n kernel, n > d the d x d covariance side: both branches of vendi_score.
SHAPES = [(40, 96), (300, 16), (64, 64)]


def assert_close_relative(ours: float, expected: float, rtol: float, what: str) -> None:
    assert abs(ours - expected) <= rtol * abs(expected), (
        f"{what}: ours={ours!r} reference={expected!r} rel_err={abs(ours - expected) / abs(expected):.3e}"
    )


def sample(n: int, d: int, seed: int) -> torch.Tensor:
    gen = generator(seed)
    # anisotropic, off-centre rows so the cosine normalisation matters
    return 0.5 + torch.randn(n, d, generator=gen, dtype=torch.float64) * torch.linspace(
        0.2, 2.0, d, dtype=torch.float64
    )


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_matches_vendi_score(n: int, d: int) -> None:
    x = sample(n, d, n + d)
    ours = float(vendi_score(x))
    dual = float(vendi.score_dual(x.numpy(), normalize=True))
    primal = float(vendi.score_X(x.numpy(), normalize=True))
    assert_close_relative(ours, dual, VENDI_RTOL, f"score_dual n={n} d={d}")
    assert_close_relative(ours, primal, VENDI_RTOL, f"score_X n={n} d={d}")


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_weighted_vendi_matches_vendi_score_with_probabilities(n: int, d: int) -> None:
    x = sample(n, d, 7 * n + d)
    weights = torch.rand(n, generator=generator(n), dtype=torch.float64)
    ours = float(vendi_score(x, weights))
    reference = float(vendi.score_X(x.numpy(), p=(weights / weights.sum()).numpy(), normalize=True))
    assert_close_relative(ours, reference, VENDI_RTOL, f"weighted score_X n={n} d={d}")


@pytest.mark.parametrize(("n", "d"), [(12, 40), (150, 8)])
def test_integer_weights_equal_the_explicitly_duplicated_set(n: int, d: int) -> None:
    x = sample(n, d, 3 * n)
    counts = torch.randint(0, 4, (n,), generator=generator(d))
    counts[0] = 2  # at least one duplicate, whatever the draw
    duplicated = x.repeat_interleave(counts, dim=0)
    weighted, explicit = float(vendi_score(x, counts)), float(vendi_score(duplicated))
    assert_close_relative(weighted, explicit, DUPLICATION_RTOL, f"counts vs duplicates n={n} d={d}")


def test_identical_rows_score_one_and_orthogonal_rows_score_n() -> None:
    row = torch.randn(1, 10, generator=generator(1), dtype=torch.float64)
    assert float(vendi_score(row.repeat(25, 1))) == pytest.approx(1.0, rel=1e-10)
    assert float(vendi_score(3.0 * torch.eye(10, dtype=torch.float64))) == pytest.approx(10.0, rel=1e-10)
    # scale never matters under the cosine kernel
    x = sample(30, 12, 2)
    scales = torch.linspace(0.1, 10, 30, dtype=torch.float64)[:, None]
    assert float(vendi_score(x * scales)) == pytest.approx(float(vendi_score(x)), rel=1e-10)


def test_vendi_is_between_one_and_min_n_d() -> None:
    for n, d in SHAPES:
        value = float(vendi_score(sample(n, d, 11)))
        assert 1.0 <= value <= min(n, d) + 1e-9, (n, d, value)


def test_vendi_ratio_of_a_set_with_itself_is_one() -> None:
    x = sample(80, 20, 3)
    assert float(vendi_ratio(x, x)) == pytest.approx(1.0, rel=1e-12)
    assert np.isfinite(float(vendi_ratio(x[:2], x)))


@pytest.mark.parametrize(("n", "d"), SHAPES)
@pytest.mark.parametrize("budget", [128 << 20, 1])
def test_batched_vendi_scores_equal_one_weighting_at_a_time(n: int, d: int, budget: int) -> None:
    """vendi_scores (the bootstrap's path) gives vendi_score of every weighting; budget 1 = one at a time."""
    x = sample(n, d, 5 * n + d)
    weights = torch.randint(0, 3, (6, n), generator=generator(n + 1)).double()
    weights[:, 0] += 1  # no all-zero weighting
    batched = vendi_scores(x, weights, budget_bytes=budget)
    single = torch.stack([vendi_score(x, w) for w in weights])
    torch.testing.assert_close(batched, single, rtol=VENDI_RTOL, atol=0.0)


def test_vendi_score_does_not_depend_on_row_order() -> None:
    x = sample(120, 10, 9)
    permuted = x[torch.randperm(120, generator=generator(9))]
    assert float(vendi_score(permuted)) == pytest.approx(float(vendi_score(x)), rel=1e-12)
