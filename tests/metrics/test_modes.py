"""Mode collapse metrics: k-means, mode histograms, mode coverage and Jensen-Shannon divergence."""

from __future__ import annotations

import pytest
import torch
from helpers.gaussians import generator
from helpers.scenarios import Mixture, well_separated_mixture

from auditor.metrics.modes import (
    MIN_MODE_SHARE,
    ModeHistogram,
    assign_to_centroids,
    choose_num_modes,
    jensen_shannon,
    kmeans,
    mode_counts,
    mode_coverage,
    mode_histogram,
    mode_jsd,
)

SAME_DISTRIBUTION_JSD_MAX = 0.01  # bits; two 4000-sample histograms over 8 equal modes
JSD_EXACT_ATOL = 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_kmeans_recovers_well_separated_blobs(seed: int) -> None:
    """Each of 8 tight blobs becomes exactly one cluster (a bijection between blobs and clusters).

    The seeding is single-trial k-means++ (D^2 sampling, no greedy local trials, one init), so it only
    reliably puts one seed per blob when the blobs are tight relative to their separation: a second
    seed lands in an already-seeded blob with probability ~ (seeded mass x within-blob D^2) / (unseeded
    mass x between-blob D^2), ~1e-3 per step here. With unit-variance blobs in 16-24 dims it is ~0.1 per
    run (see the report), so those are not used here.
    """
    gen = generator(seed)
    mixture = well_separated_mixture(gen, num_modes=8, dim=16)
    mixture = Mixture(means=mixture.means, covs=0.05**2 * mixture.covs, weights=mixture.weights)
    x, labels = mixture.sample_labelled(800, gen)
    centroids = kmeans(x, 8, generator=generator(seed))
    clusters = assign_to_centroids(x, centroids)
    pairs = set(zip(labels.tolist(), clusters.tolist(), strict=True))
    assert len(pairs) == 8, f"blob -> cluster pairs: {sorted(pairs)}"
    assert len({cluster for _, cluster in pairs}) == 8
    # and the centroids are the blob means
    for blob, cluster in pairs:
        torch.testing.assert_close(centroids[cluster], x[labels == blob].mean(0), rtol=0, atol=1e-9)


def test_kmeans_is_reproducible_with_a_seed() -> None:
    x = torch.randn(300, 5, generator=generator(1), dtype=torch.float64)
    assert torch.equal(kmeans(x, 6, generator=generator(7)), kmeans(x, 6, generator=generator(7)))


def test_kmeans_survives_more_clusters_than_distinct_points() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64).repeat(10, 1)
    centroids = kmeans(x, 4, generator=generator(2))
    assert centroids.shape == (4, 2) and torch.isfinite(centroids).all()


def test_same_distribution_has_full_mode_coverage_and_near_zero_jsd() -> None:
    gen = generator(3)
    mixture = well_separated_mixture(gen, num_modes=8, dim=16)
    real, synthetic = mixture.sample(4000, gen), mixture.sample(4000, gen)
    centroids = kmeans(real, 8, generator=generator(3))
    hist = mode_histogram(assign_to_centroids(real, centroids), assign_to_centroids(synthetic, centroids), 8)
    assert float(mode_coverage(hist)) == 1.0
    assert 0.0 <= float(mode_jsd(hist)) < SAME_DISTRIBUTION_JSD_MAX, float(mode_jsd(hist))


def test_jensen_shannon_of_disjoint_histograms_is_one_bit() -> None:
    p = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64)
    q = torch.tensor([0.0, 0.0, 0.25, 0.75], dtype=torch.float64)
    assert float(jensen_shannon(p, q)) == pytest.approx(1.0, abs=JSD_EXACT_ATOL)


def test_jensen_shannon_is_zero_for_equal_and_symmetric() -> None:
    p = torch.tensor([0.1, 0.2, 0.7], dtype=torch.float64)
    q = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)
    assert float(jensen_shannon(p, p)) == pytest.approx(0.0, abs=JSD_EXACT_ATOL)
    assert float(jensen_shannon(p, q)) == pytest.approx(float(jensen_shannon(q, p)), abs=JSD_EXACT_ATOL)
    # the closed form for p = (1, 0) vs q = (1/2, 1/2): 1 - (3/4) log2(3) + ... computed directly
    half = torch.tensor([0.5, 0.5], dtype=torch.float64)
    one = torch.tensor([1.0, 0.0], dtype=torch.float64)
    mix = torch.tensor([0.75, 0.25], dtype=torch.float64)
    expected = 0.5 * float((one[:1] * (one[:1] / mix[:1]).log2()).sum() + (half * (half / mix).log2()).sum())
    assert float(jensen_shannon(one, half)) == pytest.approx(expected, abs=JSD_EXACT_ATOL)


def test_mode_coverage_counts_modes_below_the_minimum_share_as_missing() -> None:
    real = torch.tensor([100, 100, 100, 100])
    # mode 2 gets exactly the minimum share (10% of its 25%), mode 3 just under it
    synthetic = torch.tensor([1000 - 25 - 24, 0, 25, 24]) * 1
    hist = ModeHistogram(real_counts=real, synthetic_counts=synthetic)
    assert MIN_MODE_SHARE == 0.1
    assert float(mode_coverage(hist)) == pytest.approx(0.5)


def test_dropped_modes_halve_mode_coverage_and_raise_jsd() -> None:
    real = torch.arange(8).repeat(50)
    hist = mode_histogram(real, torch.arange(4).repeat(100), 8)
    assert float(mode_coverage(hist)) == 0.5
    # p uniform on 8, q uniform on 4 of them: JSD = 1 - (3/4) log2(3) + 1/2 ... evaluate exactly
    p = torch.full((8,), 1 / 8, dtype=torch.float64)
    q = torch.cat([torch.full((4,), 1 / 4), torch.zeros(4)]).double()
    assert float(mode_jsd(hist)) == pytest.approx(float(jensen_shannon(p, q)), abs=JSD_EXACT_ATOL)
    assert float(mode_jsd(hist)) > 0.2


@pytest.mark.parametrize(("n", "k"), [(10, 2), (1000, 10), (4000, 20), (10**7, 64)])
def test_choose_num_modes_follows_sqrt_n_over_10_clamped(n: int, k: int) -> None:
    assert choose_num_modes(n) == k


def test_kmeans_recovers_unit_variance_blobs_for_almost_every_seed() -> None:
    """Greedy k-means++ with restarts: plain k-means++ recovered these 8 blobs for only 11 of 20 seeds."""
    recovered = 0
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        centres = torch.randn(8, 24, generator=gen) * 4
        truth = torch.arange(8).repeat_interleave(150)
        x = (centres[truth] + torch.randn(1200, 24, generator=gen)).double()
        labels = assign_to_centroids(x, kmeans(x, 8, generator=torch.Generator().manual_seed(seed)))
        recovered += len({int(torch.mode(labels[truth == i]).values) for i in range(8)}) == 8
    assert recovered >= 19, f"recovered the blobs for {recovered} of 20 seeds"


def test_kmeans_is_identical_for_any_row_order_duplicates_included() -> None:
    """The seeds are drawn from the rows in canonical order: a permutation changes no centroid bit."""
    gen = generator(11)
    x = torch.randn(240, 6, generator=gen, dtype=torch.float64)
    x[::4] = x[torch.randint(240, (60,), generator=gen)]  # duplicated rows
    centroids = kmeans(x, 7, generator=generator(4))
    for _ in range(3):
        permuted = x[torch.randperm(240, generator=gen)]
        assert torch.equal(kmeans(permuted, 7, generator=generator(4)), centroids)
    hist = mode_histogram(assign_to_centroids(x, centroids), assign_to_centroids(x[:100], centroids), 7)
    permuted = x[torch.randperm(240, generator=gen)]
    other = mode_histogram(
        assign_to_centroids(permuted, centroids), assign_to_centroids(x[:100].flip(0), centroids), 7
    )
    assert torch.equal(hist.real_counts, other.real_counts)
    assert float(mode_jsd(hist)) == float(mode_jsd(other))


def test_batched_histograms_give_every_replicate_its_own_metrics() -> None:
    """mode_counts over (B, n) labels and the metrics over (B, K) counts equal B single histograms."""
    gen = generator(12)
    real_labels = torch.randint(9, (30, 200), generator=gen)
    synth_labels = torch.randint(6, (30, 150), generator=gen)  # modes 6-8 never produced
    batch = ModeHistogram(mode_counts(real_labels, 9), mode_counts(synth_labels, 9))
    coverage, jsd = mode_coverage(batch), mode_jsd(batch)
    assert coverage.shape == jsd.shape == (30,)
    for b in range(30):
        single = mode_histogram(real_labels[b], synth_labels[b], 9)
        assert torch.equal(batch.real_counts[b], single.real_counts)
        assert float(coverage[b]) == float(mode_coverage(single))
        assert float(jsd[b]) == pytest.approx(float(mode_jsd(single)), rel=1e-14, abs=JSD_EXACT_ATOL)
