"""FID: closed forms, agreement with pytorch-fid, and robustness of the Gaussian statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.gaussians import generator, random_stats, sample_gaussian, spd_matrix
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_fid.fid_score import calculate_frechet_distance

from auditor.metrics.fid import frechet_distance, sqrtm_psd, trace_sqrt_product
from auditor.metrics.gaussian import GaussianStats, weighted_stats

CLOSED_FORM_RTOL = 1e-10  # eigh-based trace of a square root vs an analytic value, float64
PYTORCH_FID_RTOL = 1e-6  # vs scipy.linalg.sqrtm of the non-symmetric product (pytorch-fid)
SELF_DISTANCE_ATOL = 1e-8  # FID(X, X), scaled by Tr(S): only rounding remains
STATS_RTOL = 1e-10  # merged / weighted statistics vs a direct computation
# FID(a, b) vs FID(b, a): with singular covariances (n <= d is generated) the zero eigenvalues come out
# at rounding level, and their square roots at ~sqrt(eps) ~ 1e-8 of the scale.
SYMMETRY_RTOL = 1e-7

# pytorch-fid 0.3.0 passes disp= to scipy.linalg.sqrtm, deprecated in SciPy 1.17 (the reason for scipy<1.18).
ignore_sqrtm_disp = pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")


def stats(mean: torch.Tensor, cov: torch.Tensor, n: int = 1000) -> GaussianStats:
    return GaussianStats(n=n, mean=mean.to(torch.float64), cov=cov.to(torch.float64))


def assert_close_relative(ours: float, expected: float, rtol: float, what: str = "") -> None:
    scale = max(abs(expected), 1e-300)
    assert abs(ours - expected) <= rtol * scale, (
        f"{what}: ours={ours!r} expected={expected!r} rel_err={abs(ours - expected) / scale:.3e} > {rtol}"
    )


def assert_tensors_close(ours: torch.Tensor, expected: torch.Tensor, rtol: float, what: str = "") -> None:
    scale = expected.abs().max().clamp(min=1e-300)
    err = float((ours - expected).abs().max() / scale)
    assert err <= rtol, f"{what}: max relative error {err:.3e} > {rtol}\nours={ours}\nexpected={expected}"


def test_frechet_distance_of_diagonal_gaussians_matches_closed_form() -> None:
    gen = generator(1)
    d = 48
    a, b = 0.1 + 3 * torch.rand(d, generator=gen, dtype=torch.float64), torch.rand(d, dtype=torch.float64)
    mu1, mu2 = torch.randn(d, generator=gen, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    expected = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    ours = float(frechet_distance(stats(mu1, torch.diag(a)), stats(mu2, torch.diag(b))))
    assert_close_relative(ours, expected, CLOSED_FORM_RTOL, "diagonal covariances")


def test_frechet_distance_of_commuting_general_covariances_matches_closed_form() -> None:
    """S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T in a random basis Q: the diagonal formula still holds."""
    gen = generator(2)
    d = 32
    a = 0.2 + 2 * torch.rand(d, generator=gen, dtype=torch.float64)
    b = 0.2 + 2 * torch.rand(d, generator=gen, dtype=torch.float64)
    basis_gen_a, basis_gen_b = generator(3), generator(3)  # the same basis for both
    s1, s2 = spd_matrix(a, basis_gen_a), spd_matrix(b, basis_gen_b)
    mu1, mu2 = torch.randn(d, generator=gen, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    expected = float((mu1**2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    ours = float(frechet_distance(stats(mu1, s1), stats(mu2, s2)))
    assert_close_relative(ours, expected, CLOSED_FORM_RTOL, "commuting covariances")


def test_frechet_distance_of_non_commuting_2d_covariances_matches_closed_form() -> None:
    """In 2-D, Tr((S1 S2)^1/2) = sqrt(Tr(S1 S2) + 2 sqrt(det S1 det S2)) for any SPD S1, S2."""
    s1 = torch.tensor([[2.0, 0.7], [0.7, 1.0]], dtype=torch.float64)
    s2 = torch.tensor([[0.5, -0.3], [-0.3, 3.0]], dtype=torch.float64)
    mu1, mu2 = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.25])
    tr_sqrt = math.sqrt(float(torch.trace(s1 @ s2)) + 2 * math.sqrt(float(torch.det(s1) * torch.det(s2))))
    expected = float(((mu1 - mu2) ** 2).sum()) + float(torch.trace(s1) + torch.trace(s2)) - 2 * tr_sqrt
    ours = float(frechet_distance(stats(mu1, s1), stats(mu2, s2)))
    assert_close_relative(ours, expected, CLOSED_FORM_RTOL, "2-D non-commuting covariances")


def test_frechet_distance_with_singular_covariances_matches_closed_form() -> None:
    """Zero variances (exactly singular covariances) stay inside the closed form, no eps needed."""
    a = torch.tensor([1.0, 0.0, 4.0, 0.0, 2.0], dtype=torch.float64)
    b = torch.tensor([0.0, 0.0, 1.0, 9.0, 2.0], dtype=torch.float64)
    mu = torch.zeros(5, dtype=torch.float64)
    expected = float(((a.sqrt() - b.sqrt()) ** 2).sum())
    ours = float(frechet_distance(stats(mu, torch.diag(a)), stats(mu, torch.diag(b))))
    assert_close_relative(ours, expected, CLOSED_FORM_RTOL, "singular diagonal covariances")


@ignore_sqrtm_disp
@pytest.mark.parametrize("d", [64, 256])
def test_matches_pytorch_fid_calculate_frechet_distance(d: int) -> None:
    gen = generator(10 + d)
    a, b = random_stats(d, gen), random_stats(d, gen, mean_scale=0.5)
    ours = float(frechet_distance(a, b))
    reference = float(
        calculate_frechet_distance(a.mean.numpy(), a.cov.numpy(), b.mean.numpy(), b.cov.numpy())
    )
    assert_close_relative(ours, reference, PYTORCH_FID_RTOL, f"pytorch-fid, d={d}")


@ignore_sqrtm_disp
def test_matches_pytorch_fid_on_statistics_of_sampled_features() -> None:
    gen = generator(4)
    d = 32
    x = sample_gaussian(800, torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64), gen)
    y = 0.3 + 1.2 * torch.randn(900, d, generator=gen, dtype=torch.float64)
    a, b = GaussianStats.from_features(x), GaussianStats.from_features(y)
    reference = float(
        calculate_frechet_distance(
            x.mean(0).numpy(),
            np.cov(x.numpy(), rowvar=False),
            y.mean(0).numpy(),
            np.cov(y.numpy(), rowvar=False),
        )
    )
    assert_close_relative(float(frechet_distance(a, b)), reference, PYTORCH_FID_RTOL, "sampled features")


def test_frechet_distance_of_a_set_with_itself_is_zero() -> None:
    gen = generator(5)
    x = torch.randn(500, 64, generator=gen, dtype=torch.float64) * torch.linspace(0.1, 5, 64)
    a = GaussianStats.from_features(x)
    value = float(frechet_distance(a, a))
    scale = float(torch.trace(a.cov))
    assert 0.0 <= value <= SELF_DISTANCE_ATOL * scale, (
        f"FID(X, X)={value!r}, allowed {SELF_DISTANCE_ATOL * scale}"
    )


@pytest.mark.parametrize(("n", "d"), [(10, 64), (40, 128), (2, 16)])
def test_rank_deficient_covariances_give_a_finite_non_negative_real_value(n: int, d: int) -> None:
    """N < d: both covariances are singular; the eigh-based square roots stay real and finite."""
    gen = generator(6 + n)
    a = GaussianStats.from_features(torch.randn(n, d, generator=gen, dtype=torch.float64))
    b = GaussianStats.from_features(0.1 + torch.randn(n, d, generator=gen, dtype=torch.float64))
    value = frechet_distance(a, b)
    assert not value.is_complex()
    assert value.dtype == torch.float64
    assert math.isfinite(float(value)), f"FID={value!r}"
    assert float(value) >= 0.0, f"FID={value!r}"
    # Identical rank-deficient statistics: still (numerically) zero.
    assert float(frechet_distance(a, a)) <= SELF_DISTANCE_ATOL * float(torch.trace(a.cov))


def test_sqrtm_psd_squares_back_and_ignores_rounding_negatives() -> None:
    gen = generator(7)
    cov = GaussianStats.from_features(torch.randn(8, 20, generator=gen, dtype=torch.float64)).cov  # rank 7
    root = sqrtm_psd(cov)
    assert torch.isfinite(root).all()
    assert_tensors_close(root @ root, cov, 1e-10, "sqrtm_psd(C)^2 vs C")
    assert_tensors_close(root, root.T, 1e-12, "sqrtm_psd symmetry")


def test_trace_sqrt_product_of_identity_scalings_is_exact() -> None:
    eye = torch.eye(10, dtype=torch.float64)
    value = float(trace_sqrt_product(4 * eye, 9 * eye))
    assert_close_relative(value, 10 * 6.0, CLOSED_FORM_RTOL, "Tr((4I 9I)^1/2)")


def test_merge_of_two_halves_equals_stats_of_the_whole() -> None:
    gen = generator(8)
    x = 3.0 + torch.randn(1001, 24, generator=gen, dtype=torch.float64) @ torch.randn(
        24, 24, generator=gen, dtype=torch.float64
    )
    whole = GaussianStats.from_features(x)
    merged = GaussianStats.from_features(x[:377]).merge(GaussianStats.from_features(x[377:]))
    assert merged.n == whole.n
    assert_tensors_close(merged.mean, whole.mean, STATS_RTOL, "merged mean")
    assert_tensors_close(merged.cov, whole.cov, STATS_RTOL, "merged covariance")


def test_merge_of_many_shards_is_order_independent() -> None:
    gen = generator(9)
    x = torch.randn(600, 12, generator=gen, dtype=torch.float64) + 5.0
    shards = [GaussianStats.from_features(part) for part in torch.split(x, [50, 250, 3, 297])]
    forward = shards[0].merge(shards[1]).merge(shards[2]).merge(shards[3])
    backward = shards[3].merge(shards[2].merge(shards[1].merge(shards[0])))
    whole = GaussianStats.from_features(x)
    for merged in (forward, backward):
        assert_tensors_close(merged.mean, whole.mean, STATS_RTOL, "sharded mean")
        assert_tensors_close(merged.cov, whole.cov, STATS_RTOL, "sharded covariance")


def test_from_features_chunking_does_not_change_the_statistics() -> None:
    gen = generator(11)
    x = torch.randn(257, 9, generator=gen, dtype=torch.float32) * 100 + 1000
    whole = GaussianStats.from_features(x)
    chunked = GaussianStats.from_features(x, chunk_rows=16)
    assert_tensors_close(chunked.mean, whole.mean, STATS_RTOL, "chunked mean")
    assert_tensors_close(chunked.cov, whole.cov, STATS_RTOL, "chunked covariance")
    assert whole.mean.dtype == torch.float64 and whole.cov.dtype == torch.float64


def test_from_features_matches_numpy_unbiased_covariance() -> None:
    gen = generator(12)
    x = torch.randn(300, 7, generator=gen, dtype=torch.float64)
    ours = GaussianStats.from_features(x)
    assert_tensors_close(ours.cov, torch.from_numpy(np.cov(x.numpy(), rowvar=False)), STATS_RTOL, "np.cov")


def test_weighted_stats_with_uniform_weights_equals_from_features() -> None:
    gen = generator(13)
    x = torch.randn(400, 16, generator=gen, dtype=torch.float64) * 2 - 1
    expected = GaussianStats.from_features(x)
    for weights in (torch.ones(400), torch.full((400,), 1 / 400, dtype=torch.float64)):
        ours = weighted_stats(x, weights)
        assert_tensors_close(ours.mean, expected.mean, STATS_RTOL, "uniform-weight mean")
        assert_tensors_close(ours.cov, expected.cov, STATS_RTOL, "uniform-weight covariance")


def test_weighted_stats_with_bootstrap_counts_equals_stats_of_the_resample() -> None:
    gen = generator(14)
    x = torch.randn(300, 10, generator=gen, dtype=torch.float64)
    idx = torch.randint(300, (300,), generator=gen)
    counts = torch.bincount(idx, minlength=300).to(torch.float64)
    ours, expected = weighted_stats(x, counts), GaussianStats.from_features(x[idx])
    assert_tensors_close(ours.mean, expected.mean, STATS_RTOL, "resample mean")
    assert_tensors_close(ours.cov, expected.cov, STATS_RTOL, "resample covariance")


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 24), n=st.integers(2, 60))
def test_frechet_distance_is_symmetric(seed: int, d: int, n: int) -> None:
    gen = generator(seed)
    a = GaussianStats.from_features(torch.randn(n, d, generator=gen, dtype=torch.float64))
    b = GaussianStats.from_features(2 * torch.rand(n, d, generator=gen, dtype=torch.float64))
    ab, ba = float(frechet_distance(a, b)), float(frechet_distance(b, a))
    scale = float(torch.trace(a.cov) + torch.trace(b.cov)) + float(((a.mean - b.mean) ** 2).sum())
    assert abs(ab - ba) <= SYMMETRY_RTOL * scale, f"FID(a,b)={ab!r} FID(b,a)={ba!r}"
    assert ab >= 0.0 and math.isfinite(ab)
