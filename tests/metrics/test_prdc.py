"""Precision / recall / density / coverage: agreement with prdc, and invariances of the kNN engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.gaussians import generator
from prdc import compute_prdc

from auditor.errors import TooFewSamplesError
from auditor.metrics import prdc
from auditor.metrics.knn import KnnGraph, build_knn_graph, chunk_rows, within_set_radii
from auditor.pipeline.evaluate import MetricParams, evaluate

# Both tolerances compare means of identical counts: 1e-12 only absorbs the summation-order rounding of
# the mean (density is a mean of count / k, 0.183 vs 0.18300000000000002).
PRDC_FLOAT64_ATOL = 1e-12  # float64 engine vs prdc
# float32 engine vs prdc (whose sklearn distances are computed in float64 even for float32 input): a
# count flip needs a distance within ~1e-7 relative of a radius, which generic continuous data does not
# produce; none was seen on dozens of random sets, so no count allowance is made.
PRDC_FLOAT32_ATOL = 1e-12

METRICS = ("precision", "recall", "density", "coverage")
DISCRETE_FIELDS = (
    "synthetic_real_ball_count",
    "synthetic_nearest_real_index",
    "real_in_synthetic_ball",
    "real_ball_covered",
)
DISTANCE_FIELDS = ("synthetic_nearest_real", "real_nearest_synthetic")


def prdc_of(graph: KnnGraph) -> dict[str, float]:
    return {name: float(getattr(prdc, name)(graph)) for name in METRICS}


def reference_prdc(real: torch.Tensor, synthetic: torch.Tensor, k: int) -> dict[str, float]:
    ref = compute_prdc(real.numpy(), synthetic.numpy(), k)
    return {name: float(ref[name]) for name in METRICS}


def assert_metrics_equal(ours: dict[str, float], reference: dict[str, float], atol: float) -> None:
    bad = {
        name: (ours[name], reference[name]) for name in METRICS if abs(ours[name] - reference[name]) > atol
    }
    assert not bad, f"(ours, prdc) beyond atol={atol}: {bad}"


def two_sets(
    seed: int, n: int, m: int, d: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, ...]:
    gen = generator(seed)
    real = torch.randn(n, d, generator=gen, dtype=torch.float64)
    synthetic = 0.25 + 1.1 * torch.randn(m, d, generator=gen, dtype=torch.float64)
    return real.to(dtype), synthetic.to(dtype)


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_matches_prdc_compute_prdc(k: int) -> None:
    real, synthetic = two_sets(100 + k, n=500, m=380, d=32)
    graph = build_knn_graph(real, synthetic, k, dtype=torch.float64)
    assert_metrics_equal(prdc_of(graph), reference_prdc(real, synthetic, k), PRDC_FLOAT64_ATOL)


@pytest.mark.parametrize("k", [3, 5])
def test_matches_prdc_with_more_synthetic_than_real(k: int) -> None:
    real, synthetic = two_sets(200 + k, n=300, m=520, d=16)
    graph = build_knn_graph(real, synthetic, k, dtype=torch.float64)
    assert_metrics_equal(prdc_of(graph), reference_prdc(real, synthetic, k), PRDC_FLOAT64_ATOL)


@pytest.mark.parametrize(("k", "n", "m", "d"), [(1, 600, 450, 32), (5, 600, 450, 32), (10, 1200, 1000, 64)])
def test_float32_engine_matches_prdc(k: int, n: int, m: int, d: int) -> None:
    real, synthetic = two_sets(300 + k, n=n, m=m, d=d, dtype=torch.float32)
    graph = build_knn_graph(real, synthetic, k, dtype=torch.float32)
    assert_metrics_equal(prdc_of(graph), reference_prdc(real, synthetic, k), PRDC_FLOAT32_ATOL)


@pytest.mark.parametrize("knn_dtype", ["float64", "float32"])
def test_evaluate_matches_prdc_compute_prdc(knn_dtype: str) -> None:
    real, synthetic = two_sets(400, n=500, m=420, d=24, dtype=torch.float32)
    params = MetricParams(metrics=METRICS, nearest_k=4, bootstrap=0, knn_dtype=knn_dtype)
    evaluation = evaluate(real, synthetic, None, params)
    ours = {name: evaluation.metrics[name].value for name in METRICS}
    atol = PRDC_FLOAT64_ATOL if knn_dtype == "float64" else PRDC_FLOAT32_ATOL
    assert_metrics_equal(ours, reference_prdc(real, synthetic, 4), atol)


def test_radii_match_prdc_nearest_neighbour_distances() -> None:
    from prdc.prdc import compute_nearest_neighbour_distances

    real, _ = two_sets(7, n=200, m=2, d=8)
    ours = within_set_radii(real, 4).kth.numpy()
    reference = compute_nearest_neighbour_distances(real.numpy(), 4)
    np.testing.assert_allclose(ours, reference, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tiny_memory_budget_gives_the_same_knn_graph(dtype: torch.dtype) -> None:
    """Tiles of a few rows (hundreds of them) vs one tile: the very same graph, distances included
    (every value the graph holds is an exact distance, whatever tile its pair fell in)."""
    real, synthetic = two_sets(8, n=260, m=230, d=12)
    whole = build_knn_graph(real, synthetic, 5, dtype=dtype)
    budget = 3 * 260 * real.to(dtype).element_size() * 3  # 3 rows per block
    assert chunk_rows(260, real.to(dtype).element_size(), budget) == 3
    for budget_bytes in (1, budget):
        chunked = build_knn_graph(real, synthetic, 5, dtype=dtype, budget_bytes=budget_bytes)
        for name in (*DISCRETE_FIELDS, *DISTANCE_FIELDS):
            assert torch.equal(getattr(chunked, name), getattr(whole, name)), name
        for side in ("real", "synthetic"):
            for radius in ("kth_sq", "nearest_sq"):
                assert torch.equal(
                    getattr(getattr(chunked, side), radius), getattr(getattr(whole, side), radius)
                )
        assert prdc_of(chunked) == prdc_of(whole)


def test_permuting_rows_permutes_per_sample_vectors_and_keeps_the_metrics() -> None:
    real, synthetic = two_sets(9, n=300, m=250, d=10)
    gen = generator(99)
    p_real, p_synth = torch.randperm(300, generator=gen), torch.randperm(250, generator=gen)
    graph = build_knn_graph(real, synthetic, 5, dtype=torch.float64)
    permuted = build_knn_graph(real[p_real], synthetic[p_synth], 5, dtype=torch.float64)
    assert torch.equal(permuted.synthetic_real_ball_count, graph.synthetic_real_ball_count[p_synth])
    assert torch.equal(permuted.real_in_synthetic_ball, graph.real_in_synthetic_ball[p_real])
    # the nearest real sample is the same sample, under its new index
    inverse = torch.argsort(p_real)
    assert torch.equal(
        permuted.synthetic_nearest_real_index, inverse[graph.synthetic_nearest_real_index[p_synth]]
    )
    torch.testing.assert_close(permuted.real.kth, graph.real.kth[p_real], rtol=1e-12, atol=0.0)
    torch.testing.assert_close(permuted.synthetic.kth, graph.synthetic.kth[p_synth], rtol=1e-12, atol=0.0)
    torch.testing.assert_close(
        permuted.real_nearest_synthetic, graph.real_nearest_synthetic[p_real], rtol=1e-12, atol=0.0
    )
    ours, theirs = prdc_of(permuted), prdc_of(graph)
    for name in METRICS:
        assert ours[name] == pytest.approx(theirs[name], abs=PRDC_FLOAT64_ATOL), name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_set_compared_with_itself_has_precision_recall_coverage_one(dtype: torch.dtype) -> None:
    k = 5
    real, _ = two_sets(10, n=400, m=2, d=16, dtype=dtype)
    values = prdc_of(build_knn_graph(real, real, k, dtype=dtype))
    assert values["precision"] == 1.0 and values["recall"] == 1.0 and values["coverage"] == 1.0, values
    # Each real ball holds its own copy and its k-1 strictly closer neighbours; its k-th neighbour lies
    # exactly on the boundary, outside the strict "<" (the same exact distance on both sides).
    assert values["density"] == 1.0, values


def test_disjoint_sets_score_zero() -> None:
    real, synthetic = two_sets(11, n=100, m=100, d=4)
    graph = build_knn_graph(real, synthetic + 100.0, 3, dtype=torch.float64)
    assert prdc_of(graph) == {name: 0.0 for name in METRICS}


@pytest.mark.parametrize("k", [1, 5])
def test_too_few_samples_raise_when_n_is_at_most_k(k: int) -> None:
    enough, few = two_sets(12, n=k + 1, m=k, d=3)
    with pytest.raises(TooFewSamplesError):
        build_knn_graph(few, enough, k)
    with pytest.raises(TooFewSamplesError):
        build_knn_graph(enough, few, k)
    graph = build_knn_graph(enough, enough, k)  # n = k + 1 is the minimum
    assert graph.real.kth.shape == (k + 1,)


def test_reused_real_radii_give_the_same_graph() -> None:
    real, synthetic = two_sets(13, n=200, m=150, d=6)
    fresh = build_knn_graph(real, synthetic, 4, dtype=torch.float64)
    reused = build_knn_graph(real, synthetic, 4, dtype=torch.float64, real_radii=fresh.real)
    for name in DISCRETE_FIELDS:
        assert torch.equal(getattr(reused, name), getattr(fresh, name)), name
    assert prdc_of(reused) == prdc_of(fresh)


def test_translation_does_not_change_the_float32_metrics() -> None:
    """The engine centres on the real mean, so a large common offset costs no float32 accuracy."""
    real, synthetic = two_sets(14, n=400, m=300, d=16)
    reference = prdc_of(build_knn_graph(real, synthetic, 5, dtype=torch.float64))
    shifted = prdc_of(build_knn_graph(real + 1e4, synthetic + 1e4, 5, dtype=torch.float32))
    assert_metrics_equal(shifted, reference, PRDC_FLOAT32_ATOL)
