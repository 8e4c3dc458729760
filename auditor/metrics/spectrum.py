"""Dimensional collapse: ``effective_rank_ratio``.

The effective rank of a covariance (Roy & Vetterli 2007) is exp(H(p)) with p the eigenvalues normalised
to sum to one: the number of directions the data really spreads in. The ratio synthetic / real falls
below 1 when the synthetic data collapses onto fewer directions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def normalized_spectrum(cov: Tensor) -> Tensor:
    """Eigenvalues of a covariance, descending, clamped at zero, summing to one."""
    eigvals = torch.linalg.eigvalsh(cov).clamp(min=0).flip(0)
    total = eigvals.sum()
    return eigvals / total if total > 0 else eigvals


def entropy_of(p: Tensor) -> Tensor:
    p = p[p > 0]
    return -(p * p.log()).sum()


def effective_rank(cov: Tensor) -> Tensor:
    return entropy_of(normalized_spectrum(cov)).exp()


def effective_rank_ratio(cov_real: Tensor, cov_synthetic: Tensor) -> Tensor:
    return effective_rank(cov_synthetic) / effective_rank(cov_real)
