"""The kNN engine is exact on tied data: brute-force reference, prdc parity, dtype and order invariance."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from helpers.tied_data import SCENARIOS, reference_graph, scenario
from prdc import compute_prdc

from auditor.metrics import knn, prdc, tails
from auditor.metrics.knn import (
    ExactDistances,
    KnnGraph,
    build_knn_graph,
    rounding_bound,
    within_set_radii,
)

DTYPES = (torch.float64, torch.float32)
PRDC_METRICS = ("precision", "recall", "density", "coverage")
# The reference sums squared differences with NumPy's pairwise summation, the engine with torch's:
# continuous values may differ in the last bits (integer, one-hot and copied data not at all).
REFERENCE_DISTANCE_RTOL = 1e-13
# Means of identical counts: only the summation order of the mean can differ.
PRDC_ATOL = 1e-12
DISCRETE = ("synthetic_real_ball_count", "real_in_synthetic_ball", "real_ball_covered")
DISTANCES = ("synthetic_nearest_real_sq", "real_nearest_synthetic_sq")


def fields(graph: KnnGraph) -> dict[str, torch.Tensor]:
    return {
        "real_kth_sq": graph.real.kth_sq,
        "real_nearest_sq": graph.real.nearest_sq,
        "synthetic_kth_sq": graph.synthetic.kth_sq,
        "synthetic_nearest_sq": graph.synthetic.nearest_sq,
        **{name: getattr(graph, name) for name in (*DISCRETE, *DISTANCES, "synthetic_nearest_real_index")},
    }


def usable_ks(real: torch.Tensor, synthetic: torch.Tensor, ks: tuple[int, ...]) -> list[int]:
    return [k for k in ks if min(real.shape[0], synthetic.shape[0]) > k]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_graph_equals_the_brute_force_reference_on_tied_data(name: str, dtype: torch.dtype) -> None:
    real, synthetic = scenario(name)
    for k in usable_ks(real, synthetic, (1, 2, 5, 10)):
        graph = build_knn_graph(real, synthetic, k, dtype=dtype)
        ref = reference_graph(real, synthetic, k)
        ours = {key: value.numpy() for key, value in fields(graph).items()}
        for key in DISCRETE:
            mismatched = np.flatnonzero(ours[key] != getattr(ref, key))
            assert mismatched.size == 0, f"{name} k={k} {key}: rows {mismatched[:10]} differ"
        chosen = ours["synthetic_nearest_real_index"]
        wrong = [row for row, ok in enumerate(ref.synthetic_nearest_real_candidates) if chosen[row] not in ok]
        assert not wrong, f"{name} k={k}: nearest real of rows {wrong[:10]} is not one of the tied nearest"
        for key in ("real_kth_sq", "real_nearest_sq", "synthetic_kth_sq", "synthetic_nearest_sq", *DISTANCES):
            np.testing.assert_allclose(
                ours[key],
                getattr(ref, key),
                rtol=REFERENCE_DISTANCE_RTOL,
                atol=0,
                err_msg=f"{name} k={k} {key}",
            )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_matches_prdc_compute_prdc_on_tied_data(name: str, dtype: torch.dtype) -> None:
    real, synthetic = scenario(name, seed=1)
    # prdc's argpartition needs k + 1 < n.
    for k in usable_ks(real[1:], synthetic[1:], tuple(range(1, 11))):
        graph = build_knn_graph(real.to(dtype), synthetic.to(dtype), k, dtype=dtype)
        reference = compute_prdc(real.to(dtype).numpy(), synthetic.to(dtype).numpy(), k)
        bad = {
            metric: (float(getattr(prdc, metric)(graph)), float(reference[metric]))
            for metric in PRDC_METRICS
            if abs(float(getattr(prdc, metric)(graph)) - float(reference[metric])) > PRDC_ATOL
        }
        assert not bad, f"{name} k={k} {dtype}: (ours, prdc) {bad}"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_float32_and_float64_working_precision_give_the_same_graph(name: str) -> None:
    real, synthetic = scenario(name, seed=2)
    k = usable_ks(real, synthetic, (5, 1))[0]
    wide = fields(build_knn_graph(real, synthetic, k, dtype=torch.float64))
    narrow = fields(build_knn_graph(real, synthetic, k, dtype=torch.float32))
    differ = [key for key in wide if not torch.equal(wide[key], narrow[key])]
    assert not differ, f"{name}: {differ}"


def test_the_issue_examples_now_equal_prdc() -> None:
    """The measurements that opened the issue: each value was off before, in one or both dtypes."""
    real, _ = scenario("exact_copies")
    for dtype in DTYPES:
        graph = build_knn_graph(real.to(dtype), real.to(dtype), 5, dtype=dtype)
        assert float(prdc.density(graph)) == 1.0  # was 1.042 (float64) / 1.055 (float32)
    lattice, shifted = scenario("integer_lattice_shifted_by_one")
    reference = compute_prdc(lattice.numpy(), shifted.numpy(), 4)
    for dtype in DTYPES:
        graph = build_knn_graph(lattice, shifted, 4, dtype=dtype)
        for metric in PRDC_METRICS:
            assert float(getattr(prdc, metric)(graph)) == pytest.approx(reference[metric], abs=PRDC_ATOL)
    # One-hot rows where every row has 5+ identical copies: zero radii, and nothing is strictly
    # inside a zero ball (was 0.977/0.975/3.00 in float64, 0.247/0.247/0.763 in float32).
    rows = torch.eye(13, dtype=torch.float64)[torch.arange(600) % 13]
    other = torch.eye(13, dtype=torch.float64)[torch.arange(600) % 11]
    assert compute_prdc(rows.numpy(), other.numpy(), 5)["density"] == 0.0
    for dtype in DTYPES:
        graph = build_knn_graph(rows.to(dtype), other.to(dtype), 5, dtype=dtype)
        assert [float(getattr(prdc, m)(graph)) for m in PRDC_METRICS] == [0, 0, 0, 0]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_identical_rows_are_at_distance_exactly_zero(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    real = 1e3 + torch.randn(200, 33, generator=gen, dtype=torch.float64)  # far from the origin
    synthetic = torch.cat([real[50:80], torch.randn(40, 33, generator=gen, dtype=torch.float64)])
    graph = build_knn_graph(real, synthetic, 3, dtype=dtype)
    assert torch.equal(graph.synthetic_nearest_real_sq[:30], torch.zeros(30, dtype=torch.float64))
    assert torch.equal(graph.synthetic_nearest_real_index[:30], torch.arange(50, 80))
    assert torch.equal(graph.real_nearest_synthetic_sq[50:80], torch.zeros(30, dtype=torch.float64))
    assert bool((graph.synthetic_nearest_real_sq[30:] > 0).all())


def test_exact_distances_are_symmetric_and_do_not_depend_on_the_batch() -> None:
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(300, 257, generator=gen)
    b = torch.randn(200, 257, generator=gen, dtype=torch.float64)
    ia, ib = torch.randint(0, 300, (1500,), generator=gen), torch.randint(0, 200, (1500,), generator=gen)
    whole = ExactDistances(a, b)(ia, ib)
    assert torch.equal(ExactDistances(b, a)(ib, ia), whole)
    small = ExactDistances(a, b)
    small.batch = 7
    assert torch.equal(small(ia, ib), whole)
    for i in (0, 1, 2, 777, 1499):  # single pairs are padded: not reduced in parallel pieces
        assert torch.equal(ExactDistances(a, b)(ia[i : i + 1], ib[i : i + 1]), whole[i : i + 1])


@pytest.mark.parametrize("name", ["duplicated_real_rows", "one_hot_table", "integer_lattice_with_offset"])
def test_a_tiny_memory_budget_gives_the_same_exact_graph(name: str) -> None:
    real, synthetic = scenario(name, seed=5)
    whole = fields(build_knn_graph(real, synthetic, 5, dtype=torch.float32))
    tiled = fields(build_knn_graph(real, synthetic, 5, dtype=torch.float32, budget_bytes=4096))
    differ = [key for key in whole if not torch.equal(whole[key], tiled[key])]
    assert not differ, differ


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_permuting_rows_permutes_the_exact_graph(name: str) -> None:
    real, synthetic = scenario(name, seed=6)
    k = usable_ks(real, synthetic, (4, 1))[0]
    gen = torch.Generator().manual_seed(7)
    p_real, p_synth = (
        torch.randperm(real.shape[0], generator=gen),
        torch.randperm(synthetic.shape[0], generator=gen),
    )
    graph = build_knn_graph(real, synthetic, k, dtype=torch.float32)
    permuted = build_knn_graph(real[p_real], synthetic[p_synth], k, dtype=torch.float32)
    for side, perm in (("real", p_real), ("synthetic", p_synth)):
        for radius in ("kth_sq", "nearest_sq"):
            assert torch.equal(
                getattr(getattr(permuted, side), radius), getattr(getattr(graph, side), radius)[perm]
            )
    for key in ("synthetic_real_ball_count", "synthetic_nearest_real_sq"):
        assert torch.equal(getattr(permuted, key), getattr(graph, key)[p_synth]), key
    for key in ("real_in_synthetic_ball", "real_ball_covered", "real_nearest_synthetic_sq"):
        assert torch.equal(getattr(permuted, key), getattr(graph, key)[p_real]), key
    # Which of several equidistant reals is "the" nearest may change with the order, but not its gap.
    gap = graph.real.nearest_sq[graph.synthetic_nearest_real_index][p_synth]
    assert torch.equal(permuted.real.nearest_sq[permuted.synthetic_nearest_real_index], gap)
    assert float(tails.tail_recall(permuted)) == float(tails.tail_recall(graph))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_nearest_index_is_another_sample_at_exactly_the_nearest_distance(
    name: str, dtype: torch.dtype
) -> None:
    real, synthetic = scenario(name, seed=9)
    for x in (real, synthetic):
        for k in usable_ks(x, x, (1, 5)):
            radii = within_set_radii(x, k, dtype=dtype)
            assert radii.nearest_index is not None
            rows = torch.arange(x.shape[0])
            assert not bool((radii.nearest_index == rows).any()), f"{name} k={k}: a row is its own twin"
            at = ExactDistances(x, x)(rows, radii.nearest_index)
            wrong = (at != radii.nearest_sq).nonzero().flatten()
            assert wrong.numel() == 0, f"{name} k={k}: rows {wrong[:10].tolist()} point elsewhere"


def test_the_nearest_index_is_found_on_whole_rows_when_near_ties_overflow_the_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 4-d lattice jittered by 1e-9: float32 cannot order a point's 8 neighbours at ~1, so the exact
    nearest is often not among its listed candidates."""
    calls: list[int] = []
    original = knn._first_match_by_full_rows

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        result = original(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(int(result.numel()))
        return result

    monkeypatch.setattr(knn, "_first_match_by_full_rows", counting)
    lattice = torch.tensor(list(itertools.product(range(5), repeat=4)), dtype=torch.float64)
    gen = torch.Generator().manual_seed(10)
    x = lattice + 1e-9 * torch.randn(lattice.shape, generator=gen, dtype=torch.float64)
    radii = within_set_radii(x, 1, dtype=torch.float32)
    assert calls, "the whole-row path was not taken"
    rows = torch.arange(x.shape[0])
    assert radii.nearest_index is not None
    assert torch.equal(ExactDistances(x, x)(rows, radii.nearest_index), radii.nearest_sq)
    assert not bool((radii.nearest_index == rows).any())
    reference = ((x[:, None] - x[None]) ** 2).sum(-1).fill_diagonal_(float("inf")).min(dim=1).values
    torch.testing.assert_close(radii.nearest_sq, reference, rtol=REFERENCE_DISTANCE_RTOL, atol=0.0)


def test_ties_beyond_the_candidate_list_are_resolved_on_whole_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4-d lattice: each interior point has 8 neighbours at distance 1, more than k + 1 + spare."""
    calls: list[int] = []
    original = knn._exact_rank_by_full_rows

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        result = original(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(int(result.numel()))
        return result

    monkeypatch.setattr(knn, "_exact_rank_by_full_rows", counting)
    lattice, _ = scenario("integer_lattice_with_offset")
    radii = within_set_radii(lattice, 5, dtype=torch.float32)
    assert calls, "the whole-row path was not taken"
    reference = np.sort(((lattice.numpy()[:, None] - lattice.numpy()[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(radii.kth_sq.numpy(), reference[:, 5])
    assert np.array_equal(radii.nearest_sq.numpy(), reference[:, 1])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_the_rounding_bound_holds_with_room_on_hard_data(dtype: torch.dtype) -> None:
    """Measured expansion error, relative to the bound, on data built to stress it."""
    gen = torch.Generator().manual_seed(8)
    for dim in (3, 64, 700):
        cases = {
            "gaussian": torch.randn(150, dim, generator=gen),
            "offset": 1e4 + torch.randn(150, dim, generator=gen),
            "binary": (torch.rand(150, dim, generator=gen) < 0.3).float(),
            "bytes": torch.randint(0, 256, (150, dim), generator=gen).float(),
            "skewed": torch.rand(150, dim, generator=gen) ** 6,
        }
        for case, x in cases.items():
            xc = knn._centred(x, knn._mean(x, dtype), dtype)
            sq = knn._sq_norms(xc)
            approx = knn._block_sq_distances(xc, sq, xc, sq).double()
            rows, cols = torch.meshgrid(torch.arange(150), torch.arange(150), indexing="ij")
            exact = ExactDistances(x, x)(rows.flatten(), cols.flatten()).view(150, 150)
            scale = sq.double()[:, None] + sq.double()[None, :]
            worst = float(((approx - exact).abs() / scale.clamp(min=1e-300)).max())
            assert worst < rounding_bound(dtype, dim, x.device) / 10, (case, dim, worst)
