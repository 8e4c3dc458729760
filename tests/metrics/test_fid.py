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

from auditor.metrics import gaussian
from auditor.metrics.fid import frechet_distance, sqrtm_psd, trace_sqrt_product
from auditor.metrics.gaussian import GRAM_BLOCK, GaussianStats, weighted_stats

CLOSED_FORM_RTOL = 1e-10  # eigh-based trace of a square root vs an analytic value, float64
PYTORCH_FID_RTOL = 1e-6  # vs scipy.linalg.sqrtm of the non-symmetric product (pytorch-fid)
SELF_DISTANCE_ATOL = 1e-8  # FID(X, X), scaled by Tr(S): only rounding remains
STATS_RTOL = 1e-10  # merged / weighted statistics vs a direct computation
# FID(a, b) vs FID(b, a): with singular covariances (n <= d is generated) the zero eigenvalues come out
# at rounding level, and their square roots at ~sqrt(eps) ~ 1e-8 of the scale.
SYMMETRY_RTOL = 1e-7
# float64 statistics of float32 features with a large common offset (+1e4, unit-scale spread) vs np.cov of
# their exact float64 copy, max error / max |entry|. Measured ~5e-15; a raw-moment (unshifted) float64
# accumulation loses ~8 digits here (~1e-8), which this must catch.
OFFSET_STATS_RTOL = 1e-12
OFFSET = 1e4
# CPU vs CUDA (both float64): different summation orders only.
DEVICE_STATS_RTOL = 1e-12
DEVICE_FID_RTOL = 1e-9

# CPU-vs-CUDA tests carry both: the marker selects them (pytest -m cuda), the skip keeps CPU runs clean.
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

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


# --- accuracy and invariances of the one-pass statistics ------------------------------------------------


def offset_features(n: int, d: int, seed: int, offset: float = OFFSET) -> np.ndarray:
    """float32 rows with a large common offset, unequal scales and correlations (as Inception features)."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) / math.sqrt(d) + np.eye(d)
    x = (rng.standard_normal((n, d)) * rng.uniform(0.2, 3.0, d)) @ mixing
    return (x + offset).astype(np.float32)


def numpy_reference(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """pytorch-fid's statistics of the exact float64 copy: np.mean, np.cov(rowvar=False)."""
    x64 = x.astype(np.float64)
    return torch.from_numpy(x64.mean(axis=0)), torch.from_numpy(np.cov(x64, rowvar=False))


@pytest.fixture(params=["blocks-of-8", "default-blocks"])
def gram_block(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Small blocks run the CPU upper-triangular Gram path (and its ragged last block) at test sizes."""
    block = 8 if request.param == "blocks-of-8" else GRAM_BLOCK
    monkeypatch.setattr(gaussian, "GRAM_BLOCK", block)
    return block


@pytest.mark.parametrize("chunk_rows", [1, 7, 128, 1000, 8192])
def test_from_features_keeps_float64_accuracy_under_a_large_offset(chunk_rows: int, gram_block: int) -> None:
    x = offset_features(1000, 43, seed=20)
    ref_mean, ref_cov = numpy_reference(x)
    ours = GaussianStats.from_features(torch.from_numpy(x), chunk_rows=chunk_rows)
    assert ours.mean.dtype == torch.float64 and ours.cov.dtype == torch.float64
    assert_tensors_close(ours.mean, ref_mean, OFFSET_STATS_RTOL, f"mean, chunk_rows={chunk_rows}")
    assert_tensors_close(ours.cov, ref_cov, OFFSET_STATS_RTOL, f"covariance, chunk_rows={chunk_rows}")
    assert torch.equal(ours.cov, ours.cov.T), "the covariance must be exactly symmetric"


def test_the_offset_tolerance_catches_a_raw_moment_accumulation() -> None:
    """The tolerance above is meaningful: E[x x^T] - mean mean^T in float64 fails it by orders."""
    x = offset_features(1000, 43, seed=20)
    ref_cov = numpy_reference(x)[1]
    x64 = torch.from_numpy(x.astype(np.float64))
    mean = x64.mean(dim=0)
    naive = (x64.T @ x64 - x64.shape[0] * torch.outer(mean, mean)) / (x64.shape[0] - 1)
    err = float((naive - ref_cov).abs().max() / ref_cov.abs().max())
    assert err > 1000 * OFFSET_STATS_RTOL, f"raw moments unexpectedly accurate: {err:.2e}"


def test_from_features_on_the_blocked_path_at_full_block_size() -> None:
    """d > 2 GRAM_BLOCK with a ragged last block, several chunks: the production CPU path as it runs."""
    x = offset_features(1500, 2 * GRAM_BLOCK + 13, seed=21)
    ref_mean, ref_cov = numpy_reference(x)
    ours = GaussianStats.from_features(torch.from_numpy(x), chunk_rows=600)
    assert_tensors_close(ours.mean, ref_mean, OFFSET_STATS_RTOL, "mean")
    assert_tensors_close(ours.cov, ref_cov, OFFSET_STATS_RTOL, "covariance")
    assert torch.equal(ours.cov, ours.cov.T)


def test_unrepresentative_first_rows_trigger_one_exact_second_pass(
    monkeypatch: pytest.MonkeyPatch, gram_block: int
) -> None:
    """Sorted data (the rows the provisional shift is taken from all in one cluster, the rest 1e6 away):
    the shift is far from the mean, so the pass is repeated with the exact mean; shuffled data needs
    one pass only."""
    rng = np.random.default_rng(22)
    first = gaussian.PROVISIONAL_ROWS + 100
    x = np.concatenate([rng.standard_normal((first, 20)), 1e6 + rng.standard_normal((first + 300, 20))])
    passes: list[int] = []
    real_pass = gaussian._gram_pass

    def counting_pass(*args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        passes.append(1)
        return real_pass(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gaussian, "_gram_pass", counting_pass)
    ref_mean, ref_cov = numpy_reference(x)
    ours = GaussianStats.from_features(torch.from_numpy(x), chunk_rows=500)
    assert len(passes) == 2
    assert_tensors_close(ours.mean, ref_mean, OFFSET_STATS_RTOL, "sorted: mean")
    assert_tensors_close(ours.cov, ref_cov, OFFSET_STATS_RTOL, "sorted: covariance")
    passes.clear()
    GaussianStats.from_features(torch.from_numpy(rng.permutation(x)), chunk_rows=500)
    assert len(passes) == 1


def test_from_features_is_chunk_size_invariant_under_an_offset(gram_block: int) -> None:
    x = torch.from_numpy(offset_features(777, 40, seed=23))
    whole = GaussianStats.from_features(x, chunk_rows=100_000)
    for chunk_rows in (1, 3, 64, 776):
        chunked = GaussianStats.from_features(x, chunk_rows=chunk_rows)
        assert_tensors_close(chunked.mean, whole.mean, OFFSET_STATS_RTOL, f"mean, chunk_rows={chunk_rows}")
        assert_tensors_close(chunked.cov, whole.cov, OFFSET_STATS_RTOL, f"cov, chunk_rows={chunk_rows}")


def test_from_features_leaves_its_input_alone_and_accepts_float64() -> None:
    x32 = torch.from_numpy(offset_features(300, 12, seed=24))
    before = x32.clone()
    from32 = GaussianStats.from_features(x32, chunk_rows=50)
    assert torch.equal(x32, before)
    from64 = GaussianStats.from_features(x32.double(), chunk_rows=50)
    assert_tensors_close(from32.cov, from64.cov, 1e-15, "float32 vs its float64 copy")


def test_from_features_rejects_a_non_positive_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_rows"):
        GaussianStats.from_features(torch.zeros(4, 2), chunk_rows=0)


def test_merge_of_offset_float32_shards_equals_the_whole(gram_block: int) -> None:
    x = torch.from_numpy(offset_features(900, 40, seed=25))
    whole = GaussianStats.from_features(x)
    parts = [GaussianStats.from_features(part, chunk_rows=64) for part in torch.split(x, [100, 1, 420, 379])]
    merged = parts[0].merge(parts[1]).merge(parts[2]).merge(parts[3])
    assert merged.n == whole.n
    assert_tensors_close(merged.mean, whole.mean, OFFSET_STATS_RTOL, "merged mean")
    assert_tensors_close(merged.cov, whole.cov, OFFSET_STATS_RTOL, "merged covariance")


def test_weighted_stats_of_bootstrap_counts_on_offset_float32_features(gram_block: int) -> None:
    """Chunked, zero-weight rows skipped, sqrt-weighted symmetric products: the resample's statistics."""
    x = torch.from_numpy(offset_features(600, 40, seed=26))
    idx = torch.randint(600, (600,), generator=generator(27))
    counts = torch.bincount(idx, minlength=600).to(torch.float64)
    expected = GaussianStats.from_features(x[idx])
    for chunk_rows in (1, 50, 8192):
        ours = weighted_stats(x, counts, chunk_rows=chunk_rows)
        assert ours.n == 600
        assert_tensors_close(ours.mean, expected.mean, OFFSET_STATS_RTOL, f"mean, chunk_rows={chunk_rows}")
        assert_tensors_close(ours.cov, expected.cov, OFFSET_STATS_RTOL, f"cov, chunk_rows={chunk_rows}")
        assert torch.equal(ours.cov, ours.cov.T)


def test_weighted_stats_with_whole_chunks_of_zero_weight() -> None:
    x = torch.from_numpy(offset_features(200, 9, seed=28))
    weights = torch.zeros(200, dtype=torch.float64)
    weights[150:] = torch.rand(50, generator=generator(29), dtype=torch.float64)
    ours = weighted_stats(x, weights, chunk_rows=40)  # chunks 0-3 hold no weight at all
    direct = weighted_stats_direct(x.double(), weights)
    assert_tensors_close(ours.mean, direct.mean, OFFSET_STATS_RTOL, "mean")
    assert_tensors_close(ours.cov, direct.cov, OFFSET_STATS_RTOL, "covariance")


def test_weighted_stats_with_signed_weights_matches_the_direct_formula(gram_block: int) -> None:
    x = torch.from_numpy(offset_features(300, 20, seed=30))
    weights = torch.rand(300, generator=generator(31), dtype=torch.float64) + 0.5
    weights[::7] = -0.2  # not a bootstrap: the general (y * w)^T y path
    ours = weighted_stats(x, weights, chunk_rows=64)
    direct = weighted_stats_direct(x.double(), weights)
    assert_tensors_close(ours.mean, direct.mean, 1e-11, "mean")
    assert_tensors_close(ours.cov, direct.cov, 1e-11, "covariance")


def weighted_stats_direct(x: torch.Tensor, weights: torch.Tensor) -> GaussianStats:
    """The definition, centred on the exact weighted mean (float64 input)."""
    w = weights / weights.sum()
    mean = w @ x
    centred = x - mean
    n = x.shape[0]
    return GaussianStats(n=n, mean=mean, cov=(centred * w[:, None]).T @ centred * (n / (n - 1)))


# --- CPU vs CUDA (run by bench/gpu_check.sh; skipped without a GPU) ------------------------------------


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("d", [64, 2 * GRAM_BLOCK + 13])
def test_cuda_statistics_equal_the_cpu_ones(d: int) -> None:
    x = torch.from_numpy(offset_features(3000, d, seed=32))
    cpu = GaussianStats.from_features(x, chunk_rows=1024)
    gpu = GaussianStats.from_features(x.cuda(), chunk_rows=1024)
    assert gpu.mean.device.type == "cuda" and gpu.cov.dtype == torch.float64
    assert_tensors_close(gpu.mean.cpu(), cpu.mean, DEVICE_STATS_RTOL, f"mean, d={d}")
    assert_tensors_close(gpu.cov.cpu(), cpu.cov, DEVICE_STATS_RTOL, f"covariance, d={d}")
    counts = torch.bincount(torch.randint(3000, (3000,), generator=generator(33)), minlength=3000)
    w_cpu = weighted_stats(x, counts.double(), chunk_rows=1024)
    w_gpu = weighted_stats(x.cuda(), counts.double().cuda(), chunk_rows=1024)
    assert_tensors_close(w_gpu.cov.cpu(), w_cpu.cov, DEVICE_STATS_RTOL, f"weighted covariance, d={d}")


@pytest.mark.cuda
@needs_cuda
# N > d: the Cholesky path; N < d: singular covariances, the eigh path, whose ~d - N rounding-level
# eigenvalues contribute square roots of ~sqrt(eps) each on either device (cf. SYMMETRY_RTOL).
@pytest.mark.parametrize(("n", "rtol"), [(3000, DEVICE_FID_RTOL), (500, SYMMETRY_RTOL)])
def test_cuda_frechet_distance_equals_the_cpu_one(n: int, rtol: float) -> None:
    d = 1100
    a = GaussianStats.from_features(torch.from_numpy(offset_features(n, d, seed=34)))
    b = GaussianStats.from_features(torch.from_numpy(offset_features(n, d, seed=35, offset=OFFSET + 0.1)))
    cpu = float(frechet_distance(a, b))
    gpu = float(frechet_distance(a.to("cuda"), b.to("cuda")))
    assert_close_relative(gpu, cpu, rtol, f"FID on CUDA vs CPU, n={n}, d={d}")
