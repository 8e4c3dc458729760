"""CPU vs CUDA: every metric of a whole evaluation agrees, to tolerances stated per metric family.

Marked ``cuda`` (``pytest -m cuda`` selects them; bench/gpu_check.sh runs them on a GPU machine) and
skipped where no CUDA device is present, so the CPU suite stays clean.

Tolerances, on value, interval ends, baseline and the extras of every metric:

- kNN family (precision ... authenticity): identical to 1e-12 absolute. The kNN graph decides every
  membership exactly (distances near a decision are re-checked in float64), and a metric is a mean of
  those decisions, so a device may change no decision at all.
- fid, effective_rank_ratio, vendi, vendi_ratio: float64 statistics and eigenvalues, summed in another
  order on the device: 1e-8 relative.
- kid: products in the features' float32, kernel sums in float64; the devices' float32 products round
  differently (~1e-7 of a kernel entry): 1e-5 absolute plus 1e-4 relative.
- mode_coverage, mode_jsd: k-means on well-separated clusters, float64: the same modes, 1e-9 absolute.
"""

from __future__ import annotations

import math

import pytest
import torch

from auditor.metrics import KNN_METRICS
from auditor.pipeline.evaluate import Evaluation, MetricParams, evaluate

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

KNN_ATOL = 1e-12
FLOAT64_RTOL = 1e-8
KID_ATOL, KID_RTOL = 1e-5, 1e-4
MODES_ATOL = 1e-9
FLOAT64_METRICS = frozenset({"fid", "effective_rank_ratio", "vendi", "vendi_ratio"})


def tolerance(name: str) -> tuple[float, float]:
    """(absolute, relative) tolerance of metric ``name``."""
    if name in KNN_METRICS:
        return KNN_ATOL, 0.0
    if name in FLOAT64_METRICS:
        return 1e-12, FLOAT64_RTOL
    if name == "kid":
        return KID_ATOL, KID_RTOL
    if name in ("mode_coverage", "mode_jsd"):
        return MODES_ATOL, 0.0
    raise AssertionError(f"no stated tolerance for metric {name!r}: add one")


def clustered_features(n: int, d: int, seed: int, *, drop_cluster: bool = False) -> torch.Tensor:
    """float32 rows around 8 well-separated centres (~100 noise sds apart in norm), the same centres for
    every seed; scaled so that KID's cubic kernel values are of order one, as for real features."""
    centres = 10.0 * torch.randn(8, d, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(seed)
    clusters = 7 if drop_cluster else 8
    labels = torch.randint(clusters, (n,), generator=gen)
    return (0.1 * (centres[labels] + torch.randn(n, d, generator=gen))).to(torch.float32)


def parity_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, MetricParams]:
    real = clustered_features(600, 64, seed=1)
    synthetic = 1.05 * clustered_features(500, 64, seed=2, drop_cluster=True) + 0.1
    holdout = clustered_features(400, 64, seed=3)
    params = MetricParams(bootstrap=50, spectral_bootstrap=5, kid_subset_size=200, kid_subsets=20)
    return real, synthetic, holdout, params


def evaluation_on(device: str) -> Evaluation:
    real, synthetic, holdout, params = parity_inputs()
    return evaluate(real.to(device), synthetic.to(device), holdout.to(device), params)


def mismatches(ours: Evaluation, reference: Evaluation) -> list[str]:
    """Every value of ``ours`` outside its metric's tolerance around ``reference``'s (empty: all agree)."""
    problems = []
    if ours.metrics.keys() != reference.metrics.keys():
        problems.append(f"metrics differ: {sorted(ours.metrics)} vs {sorted(reference.metrics)}")
    for name, ref in reference.metrics.items():
        got = ours.metrics.get(name)
        if got is None:
            continue
        atol, rtol = tolerance(name)
        pairs = {"value": (got.value, ref.value), "ci_low": (got.ci_low, ref.ci_low)}
        pairs |= {"ci_high": (got.ci_high, ref.ci_high), "baseline": (got.baseline, ref.baseline)}
        pairs |= {f"extra.{key}": (got.extra.get(key), value) for key, value in ref.extra.items()}
        for field, (a, b) in pairs.items():
            if a is None or b is None:
                if a is not b:
                    problems.append(f"{name}.{field}: {a!r} vs {b!r}")
                continue
            if not (math.isfinite(a) and math.isfinite(b)):
                if not (a == b or (math.isnan(a) and math.isnan(b))):
                    problems.append(f"{name}.{field}: {a!r} vs {b!r}")
                continue
            if abs(a - b) > atol + rtol * abs(b):
                problems.append(
                    f"{name}.{field}: {a!r} vs {b!r} (|diff| {abs(a - b):.3e} > {atol:g} + {rtol:g} * |ref|)"
                )
    return problems


@pytest.mark.cuda
@needs_cuda
def test_every_metric_of_an_evaluation_on_cuda_equals_the_cpu_one() -> None:
    cpu = evaluation_on("cpu")
    gpu = evaluation_on("cuda")
    problems = mismatches(gpu, cpu)
    assert not problems, "CUDA vs CPU:\n" + "\n".join(problems)
    assert cpu.details.get("num_modes") == gpu.details.get("num_modes")
