"""Percentile-bootstrap helpers shared by every metric.

What the intervals capture is documented in the README ("Confidence intervals"): the sampling
variability of the evaluated samples, with the fitted structures (k-NN radii, k-means modes, extractor)
held at their full-sample values.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_CONFIDENCE = 0.95


def resample_indices(n: int, replicates: int, generator: torch.Generator) -> Tensor:
    """(replicates, n) indices drawn with replacement."""
    return torch.randint(n, (replicates, n), generator=generator)


def resample_weights(n: int, replicates: int, generator: torch.Generator) -> Tensor:
    """(replicates, n) multinomial counts: the same resampling as indices, as weights."""
    idx = resample_indices(n, replicates, generator)
    return torch.zeros(replicates, n, dtype=torch.float64).scatter_add_(
        1, idx, torch.ones(replicates, n, dtype=torch.float64)
    )


def bootstrap_means(scores: Tensor, replicates: int, generator: torch.Generator) -> Tensor:
    """Means of ``replicates`` resamples of the per-sample ``scores``."""
    scores = scores.double().cpu()
    idx = resample_indices(scores.shape[0], replicates, generator)
    return scores[idx].mean(dim=1)


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
