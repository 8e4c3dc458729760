"""Percentile-bootstrap helpers shared by every metric.

What the intervals capture is documented in the README ("Confidence intervals"): the sampling
variability of the evaluated samples, with the fitted structures (k-NN radii, k-means modes, extractor)
held at their full-sample values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

DEFAULT_CONFIDENCE = 0.95


DEFAULT_BUDGET_BYTES = 64 << 20


def resample_indices(n: int, replicates: int, generator: torch.Generator) -> Tensor:
    """(replicates, n) indices drawn with replacement."""
    return torch.randint(n, (replicates, n), generator=generator)


def indices_to_weights(idx: Tensor, n: int) -> Tensor:
    """(replicates, n) multinomial counts of (replicates, n) resampled indices, as float64 weights."""
    return torch.zeros(idx.shape[0], n, dtype=torch.float64).scatter_add_(
        1, idx, torch.ones(idx.shape, dtype=torch.float64)
    )


def resample_weights(n: int, replicates: int, generator: torch.Generator) -> Tensor:
    """(replicates, n) multinomial counts: the same resampling as indices, as weights."""
    return indices_to_weights(resample_indices(n, replicates, generator), n)


def replicate_chunk(n: int, budget_bytes: int) -> int:
    """Replicates per chunk so that a chunk's (replicates, n) float64 / int64 arrays fit the budget."""
    return max(1, budget_bytes // (max(1, n) * 8 * 2))


def resample_index_chunks(
    sizes: Sequence[int],
    replicates: int,
    generator: torch.Generator,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> Iterator[list[Tensor]]:
    """Chunks of the draws ``[resample_indices(n, replicates, generator) for n in sizes]``, the same
    numbers, in chunks of replicates whose arrays fit ``budget_bytes``.

    The draws are one stream: every replicate of the first size, then of the second... A chunk needs
    replicates b0..b1 of every size at once, so the generator's state at the start of each size's run
    is found by drawing through it once (nothing kept), and each chunk resumes each run from there.
    Memory is O(chunk x n) whatever ``replicates`` is; the generator ends where the plain draws leave it.
    """
    starts = []
    for n in sizes:
        starts.append(generator.get_state())
        step = replicate_chunk(n, budget_bytes)
        for done in range(0, replicates, step):
            torch.randint(n, (min(step, replicates - done), n), generator=generator)
    end = generator.get_state()
    step = min(replicate_chunk(max(sizes, default=1), budget_bytes), max(1, replicates))
    for done in range(0, replicates, step):
        count = min(step, replicates - done)
        chunk = []
        for position, n in enumerate(sizes):
            generator.set_state(starts[position])
            chunk.append(torch.randint(n, (count, n), generator=generator))
            starts[position] = generator.get_state()
        yield chunk
    generator.set_state(end)


def bootstrap_means(
    scores: Tensor, replicates: int, generator: torch.Generator, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> Tensor:
    """Means of ``replicates`` resamples of the per-sample ``scores`` (chunked: bounded memory)."""
    scores = scores.double().cpu()
    means = [
        scores[idx].mean(dim=1)
        for (idx,) in resample_index_chunks([scores.shape[0]], replicates, generator, budget_bytes)
    ]
    return torch.cat(means) if means else torch.empty(0, dtype=torch.float64)


def percentile_interval(replicates: Tensor, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    values = replicates.double().cpu()
    return float(torch.quantile(values, alpha)), float(torch.quantile(values, 1 - alpha))


def bias_corrected_interval(
    replicates: Tensor,
    point: float,
    confidence: float = DEFAULT_CONFIDENCE,
    *,
    lower: float | None = None,
    upper: float | None = None,
) -> tuple[float, float]:
    """Percentile interval of the replicates shifted by the bootstrap bias estimate.

    Plug-in statistics such as FID, Vendi or a JS divergence are biased under resampling with replacement
    (duplicated rows shrink covariances and diversity), so their raw percentile interval can miss the
    point estimate entirely. Removing the estimated bias (mean of replicates - point) centres the
    interval on the estimate while keeping the bootstrap's spread. Clamped to the metric's range.
    """
    values = replicates.double().cpu()
    low, high = percentile_interval(values - (values.mean() - point), confidence)
    if lower is not None:
        low, high = max(low, lower), max(high, lower)
    if upper is not None:
        low, high = min(low, upper), min(high, upper)
    return low, high
