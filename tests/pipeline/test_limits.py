"""Every number a caller controls has a bound: schema bounds, the operator's maxima, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from auditor.config import Settings
from auditor.errors import LimitExceededError
from auditor.metrics.bootstrap import bootstrap_means, resample_index_chunks, resample_indices
from auditor.pipeline.evaluate import MAX_SEED, MetricParams
from auditor.pipeline.limits import PARAMETER_MAXIMA, apply_operator_limits
from auditor.pipeline.spec import AuditSpec, DatasetRef
from auditor.pipeline.stages import prepare

# A bootstrap of 200,000 replicates over 300 samples cost +930 MB before replicates were chunked.
HUGE_BOOTSTRAP_MAX_GROWTH_MB = 200


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 2**70},
        {"seed": -1},
        {"seed": MAX_SEED + 1},
        {"bootstrap": 10**7},
        {"spectral_bootstrap": 10**6},
        {"kid_subsets": 10**7},
        {"kid_subset_size": 10**8},
        {"nearest_k": 10**4},
        {"num_modes": 10**6},
        {"memory_budget_mb": 10**8},
        {"memory_budget_mb": 1},
        {"metrics": ["fid"] * 100},
    ],
)
def test_the_schema_bounds_every_number(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        MetricParams(**change)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", sorted(PARAMETER_MAXIMA))
def test_a_caller_may_lower_but_never_raise_the_operators_maxima(field: str) -> None:
    settings = Settings(**{PARAMETER_MAXIMA[field]: 40})  # type: ignore[arg-type]
    assert apply_operator_limits(MetricParams(**{field: 20}), settings).model_dump()[field] == 20
    with pytest.raises(LimitExceededError) as raised:
        apply_operator_limits(MetricParams(**{field: 41}), settings)
    assert raised.value.code == "limit_exceeded" and raised.value.http_status == 422
    assert raised.value.details == {"field": f"params.{field}", "value": 41, "maximum": 40}
    assert f"AUDITOR_{PARAMETER_MAXIMA[field].upper()}" in raised.value.message


def test_the_memory_budget_defaults_to_the_operators() -> None:
    settings = Settings(memory_budget_mb=64)
    assert apply_operator_limits(MetricParams(), settings).memory_budget_mb == 64
    spec = AuditSpec(real=DatasetRef(uri="r.npy"), synthetic=DatasetRef(uri="s.npy"))
    assert spec.params.memory_budget_mb is None  # what is recorded: "the server's"
    assert prepare(spec, settings=settings).spec.params.memory_budget_mb == 64
    with pytest.raises(LimitExceededError):
        prepare(spec.model_copy(update={"params": MetricParams(memory_budget_mb=65)}), settings=settings)


def test_chunked_resampling_draws_the_same_numbers_and_leaves_the_generator_where_plain_draws_do() -> None:
    plain = torch.Generator().manual_seed(5)
    expected = [resample_indices(n, 23, plain) for n in (40, 70, 9)]
    after = torch.randint(100, (8,), generator=plain)
    chunked = torch.Generator().manual_seed(5)
    chunks = list(resample_index_chunks([40, 70, 9], 23, chunked, budget_bytes=70 * 16 * 4))
    assert len(chunks) == 6 and all(c[1].shape[0] <= 4 for c in chunks)
    for side, want in enumerate(expected):
        assert torch.equal(torch.cat([c[side] for c in chunks]), want)
    assert torch.equal(torch.randint(100, (8,), generator=chunked), after)
    scores = torch.rand(300, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    whole = bootstrap_means(scores, 500, torch.Generator().manual_seed(7), budget_bytes=1 << 30)
    pieces = bootstrap_means(scores, 500, torch.Generator().manual_seed(7), budget_bytes=300 * 16 * 7)
    assert torch.equal(whole, pieces)


def test_a_huge_bootstrap_stays_within_bounded_memory(tmp_path: Path) -> None:
    """Peak RSS growth of a 200,000-replicate bootstrap on 300 x 16 data, in a fresh process."""
    script = """
import json, resource, torch
from auditor.pipeline.evaluate import MetricParams, evaluate
real = torch.randn(300, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
synthetic = torch.randn(300, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
evaluate(real, synthetic, None, MetricParams(metrics=("precision",), bootstrap=20, memory_budget_mb=64))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = evaluate(real, synthetic, None, MetricParams(metrics=("precision", "mode_coverage"),
                  bootstrap=200_000, memory_budget_mb=64))
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"grown_mb": grown, "ci": [result.metrics["precision"].ci_low, result.metrics["precision"].ci_high]}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["grown_mb"] < HUGE_BOOTSTRAP_MAX_GROWTH_MB, report
    low, high = report["ci"]
    assert 0 <= low <= high <= 1


def test_the_cli_refuses_a_bootstrap_above_the_operators_maximum(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("real", "synth"):
        np.save(tmp_path / f"{name}.npy", rng.normal(size=(50, 4)).astype(np.float32))
    env = {
        "AUDITOR_MAX_BOOTSTRAP": "1000",
        "AUDITOR_HOME": str(tmp_path / "home"),
        "PATH": "/usr/bin:/bin",
    }
    auditor = Path(sys.executable).with_name("auditor")
    args = [
        str(auditor),
        "audit",
        "--real",
        str(tmp_path / "real.npy"),
        "--synthetic",
        str(tmp_path / "synth.npy"),
    ]
    done = subprocess.run(
        [*args, "--bootstrap", "1001", "--no-store"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "error [limit_exceeded]" in done.stderr and "AUDITOR_MAX_BOOTSTRAP" in done.stderr
    assert "Traceback" not in done.stderr
