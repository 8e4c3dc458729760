"""KID: agreement with torch-fidelity and clean-fid, and the estimator's basic behaviour.

Reference differences (documented here, checked below):

- torch-fidelity (``kid_features_to_metric``) and clean-fid (``kernel_distance``) both average the
  unbiased MMD^2 estimator ``(sum_{i!=j} k(x_i,x_j) + sum_{i!=j} k(y_i,y_j)) / (m(m-1)) - 2 sum k(x_i,y_j) / m^2``
  over random subsets. clean-fid writes it as ``(sum_offdiag(Kxx + Kyy) / (m-1) - 2 sum Kxy / m) / m``,
  which is algebraically the same estimator (not the U-statistic that also drops the Kxy diagonal).
- The subsets differ: torch-fidelity draws them from ``np.random.RandomState(rng_seed)``, clean-fid from
  the global NumPy RNG, the auditor from a ``torch.Generator``. With ``subset_size == n`` every subset is
  the whole set, so all three must agree whatever the RNG; that is what the comparisons use.
- Subsets are drawn from each side's rows in canonical (byte) order, so the auditor's value does not
  depend on the order of the rows; the references draw by position.
- clean-fid returns only the mean; torch-fidelity and the auditor also return the population standard
  deviation over subsets (``np.std`` / ``std(unbiased=False)``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from cleanfid.fid import kernel_distance
from helpers.gaussians import generator
from torch_fidelity.metric_kid import kernel_poly, kid_features_to_metric, mmd2

from auditor.metrics import kid
from auditor.metrics.canonical import canonical_rows
from auditor.metrics.kid import kernel_inception_distance, polynomial_mmd2_unbiased

REFERENCE_RTOL = 1e-6  # float64 features, same estimator, different summation order
KERNEL_MMD_RTOL = 1e-10  # the same kernel matrices through both MMD^2 formulas
SAME_DISTRIBUTION_ATOL = 0.02  # |KID| for two samples of one distribution (subset std here ~0.01)
SHIFTED_MIN = 0.5  # KID for a 0.5 mean shift in every one of 16 dims is ~1.0


def assert_close_relative(ours: float, expected: float, rtol: float, what: str) -> None:
    scale = max(abs(expected), 1e-300)
    assert abs(ours - expected) <= rtol * scale, (
        f"{what}: ours={ours!r} reference={expected!r} rel_err={abs(ours - expected) / scale:.3e} > {rtol}"
    )


@pytest.fixture
def restore_numpy_global_rng() -> Iterator[None]:
    """clean-fid draws from the global NumPy RNG: seed it for the test, then put the old state back."""
    state = np.random.get_state()
    np.random.seed(0)
    yield
    np.random.set_state(state)


def features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return shift + torch.randn(n, d, generator=generator(seed), dtype=torch.float64)


@pytest.mark.parametrize(("n", "d"), [(150, 32), (300, 8)])
def test_matches_torch_fidelity_kid(n: int, d: int) -> None:
    real, synthetic = features(n, d, 1), features(n, d, 2, shift=0.2)
    ours = kernel_inception_distance(real, synthetic, subset_size=n, subsets=3, generator=generator(0))
    reference = kid_features_to_metric(real, synthetic, kid_subsets=3, kid_subset_size=n, verbose=False)
    assert_close_relative(
        float(ours.mean), reference["kernel_inception_distance_mean"], REFERENCE_RTOL, "mean"
    )
    # Whole-set subsets all agree, so both spreads are rounding noise.
    assert float(ours.std) <= REFERENCE_RTOL * abs(float(ours.mean))
    assert reference["kernel_inception_distance_std"] <= REFERENCE_RTOL * abs(float(ours.mean))


@pytest.mark.parametrize(("n", "d"), [(150, 32), (300, 8)])
def test_matches_clean_fid_kernel_distance(n: int, d: int, restore_numpy_global_rng: None) -> None:
    real, synthetic = features(n, d, 3), features(n, d, 4, shift=-0.3)
    ours = kernel_inception_distance(real, synthetic, subset_size=n, subsets=2, generator=generator(0))
    reference = kernel_distance(real.numpy(), synthetic.numpy(), num_subsets=2, max_subset_size=n)
    assert_close_relative(float(ours.mean), reference, REFERENCE_RTOL, "clean-fid kernel_distance")


def test_clean_fid_and_torch_fidelity_use_the_same_estimator(restore_numpy_global_rng: None) -> None:
    n = 120
    x, y = features(n, 16, 5), features(n, 16, 6, shift=0.1)
    clean = kernel_distance(x.numpy(), y.numpy(), num_subsets=1, max_subset_size=n)
    fidelity = kid_features_to_metric(x, y, kid_subsets=1, kid_subset_size=n, verbose=False)
    assert_close_relative(
        clean, fidelity["kernel_inception_distance_mean"], REFERENCE_RTOL, "clean-fid vs tf"
    )


@pytest.mark.parametrize("shift", [0.0, 0.25])
def test_polynomial_mmd2_unbiased_matches_torch_fidelity_mmd2_on_the_same_kernels(shift: float) -> None:
    x, y = features(90, 20, 7), features(90, 20, 8, shift=shift)
    xs, ys = x.numpy(), y.numpy()
    kwargs = {"kid_kernel_poly_degree": 3, "kid_kernel_poly_gamma": None, "kid_kernel_poly_coef0": 1}
    k_xx, k_yy, k_xy = (
        kernel_poly(xs, xs, **kwargs),
        kernel_poly(ys, ys, **kwargs),
        kernel_poly(xs, ys, **kwargs),
    )
    reference = float(mmd2(k_xx, k_xy, k_yy, mmd_est="unbiased"))
    ours = float(polynomial_mmd2_unbiased(x, y))
    assert_close_relative(ours, reference, KERNEL_MMD_RTOL, "mmd2 on identical kernel matrices")


def test_kid_is_near_zero_for_two_samples_of_the_same_distribution() -> None:
    est = kernel_inception_distance(
        features(600, 16, 9), features(600, 16, 10), subset_size=300, subsets=20, generator=generator(0)
    )
    assert abs(float(est.mean)) < SAME_DISTRIBUTION_ATOL, f"KID={float(est.mean)!r}"


def test_kid_is_clearly_positive_for_shifted_distributions() -> None:
    est = kernel_inception_distance(
        features(600, 16, 9),
        features(600, 16, 10, shift=0.5),
        subset_size=300,
        subsets=20,
        generator=generator(0),
    )
    assert float(est.mean) > SHIFTED_MIN, f"KID={float(est.mean)!r}"
    assert (est.subset_values > 0).all()


def test_kid_is_reproducible_with_a_seed_and_subsets_depend_on_it() -> None:
    real, synthetic = features(200, 8, 11), features(200, 8, 12, shift=0.1)
    first = kernel_inception_distance(real, synthetic, subset_size=50, subsets=10, generator=generator(42))
    again = kernel_inception_distance(real, synthetic, subset_size=50, subsets=10, generator=generator(42))
    other = kernel_inception_distance(real, synthetic, subset_size=50, subsets=10, generator=generator(43))
    assert torch.equal(first.subset_values, again.subset_values)
    assert float(first.mean) == float(again.mean) and float(first.std) == float(again.std)
    assert not torch.equal(first.subset_values, other.subset_values)


def test_kid_subset_size_is_capped_at_the_smaller_set_and_std_is_population_std() -> None:
    est = kernel_inception_distance(
        features(40, 4, 13), features(70, 4, 14), subset_size=1000, subsets=5, generator=generator(0)
    )
    assert est.subset_size == 40
    assert est.subset_values.shape == (5,)
    assert float(est.std) == pytest.approx(float(np.std(est.subset_values.numpy())), rel=1e-12)


def test_polynomial_mmd2_unbiased_is_zero_in_expectation_not_clamped() -> None:
    """The unbiased estimator can go negative for identical distributions; it must not be clamped."""
    values = [
        float(polynomial_mmd2_unbiased(features(30, 4, 100 + i), features(30, 4, 200 + i))) for i in range(20)
    ]
    assert min(values) < 0.0 < max(values), values


# --- how it is computed: whole-set subsets once, overlapping subsets from shared kernel matrices -----

PATH_RTOL = 1e-10  # the same per-subset sums, added in another order


def per_subset_reference(
    real: torch.Tensor, synthetic: torch.Tensor, m: int, subsets: int, seed: int
) -> torch.Tensor:
    """The definition, one subset at a time, drawing as kernel_inception_distance does (canonical rows)."""
    real, synthetic = canonical_rows(real), canonical_rows(synthetic)
    gen = generator(seed)
    values = []
    for _ in range(subsets):
        r = torch.randperm(real.shape[0], generator=gen)[:m]
        s = torch.randperm(synthetic.shape[0], generator=gen)[:m]
        values.append(float(polynomial_mmd2_unbiased(real[r], synthetic[s])))
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize(
    ("n_real", "n_synth", "m", "subsets"),
    [(60, 70, 20, 9), (120, 121, 120, 12), (90, 90, 45, 10), (30, 200, 30, 5)],
)
@pytest.mark.parametrize("budget", [kid.DEFAULT_BUDGET_BYTES, 1 << 14])
def test_both_subset_paths_follow_the_per_subset_definition(
    n_real: int, n_synth: int, m: int, subsets: int, budget: int
) -> None:
    """The union path (shared kernel tiles, indicator sums) and the batched path (bmm per subset) give
    every subset's MMD^2 of the one-subset-at-a-time definition; a small budget forces many tiles."""
    real, synthetic = features(n_real, 6, 21), features(n_synth, 6, 22, shift=0.2)
    expected = per_subset_reference(real, synthetic, m, subsets, seed=5)
    real_c, synth_c = canonical_rows(real), canonical_rows(synthetic)
    gen = generator(5)
    idx = [
        (torch.randperm(n_real, generator=gen)[:m], torch.randperm(n_synth, generator=gen)[:m])
        for _ in range(subsets)
    ]
    real_idx, synth_idx = torch.stack([r for r, _ in idx]), torch.stack([s for _, s in idx])
    for path in (kid._subset_mmd2_union, kid._subset_mmd2_batched):
        got = path(real_c, synth_c, real_idx, synth_idx, budget)
        torch.testing.assert_close(got, expected, rtol=PATH_RTOL, atol=1e-14, msg=path.__name__)
    est = kernel_inception_distance(real, synthetic, subset_size=m, subsets=subsets, generator=generator(5))
    torch.testing.assert_close(est.subset_values, expected, rtol=PATH_RTOL, atol=1e-14)


def test_whole_set_subsets_are_one_mmd_and_draw_nothing() -> None:
    real, synthetic = features(80, 5, 23), features(80, 5, 24, shift=0.1)
    gen = generator(3)
    state = gen.get_state()
    est = kernel_inception_distance(real, synthetic, subset_size=500, subsets=7, generator=gen)
    assert torch.equal(gen.get_state(), state)
    assert est.subset_size == 80 and est.subset_values.shape == (7,)
    assert float(est.std) == 0.0 and bool((est.subset_values == est.mean).all())
    assert_close_relative(
        float(est.mean), float(polynomial_mmd2_unbiased(real, synthetic)), PATH_RTOL, "whole-set MMD^2"
    )
    # the tiled whole-set sums, with tiles far smaller than the set
    tiled = float(kid._full_set_mmd2(canonical_rows(real), canonical_rows(synthetic), 1 << 12))
    assert_close_relative(tiled, float(est.mean), PATH_RTOL, "tiled whole-set MMD^2")


@pytest.mark.parametrize(
    ("subset_size", "dtype"), [(25, torch.float64), (40, torch.float32), (1000, torch.float32)]
)
def test_kid_is_identical_for_any_row_order_duplicates_included(subset_size: int, dtype: torch.dtype) -> None:
    real = features(40, 4, 25).to(dtype)
    synthetic = features(41, 4, 26, shift=0.3).to(dtype)
    real[::5] = real[1]  # duplicated rows
    gen = generator(27)
    permuted_real = real[torch.randperm(40, generator=gen)]
    permuted_synth = synthetic[torch.randperm(41, generator=gen)]
    a = kernel_inception_distance(real, synthetic, subset_size=subset_size, subsets=6, generator=generator(1))
    b = kernel_inception_distance(
        permuted_real, permuted_synth, subset_size=subset_size, subsets=6, generator=generator(1)
    )
    assert torch.equal(a.subset_values, b.subset_values)
    assert float(a.mean) == float(b.mean) and float(a.std) == float(b.std)
