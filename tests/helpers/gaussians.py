"""Gaussian test data: well-conditioned covariances, statistics with known Frechet distances, samples."""

from __future__ import annotations

import torch
from torch import Tensor

from auditor.metrics.gaussian import STATS_DTYPE, GaussianStats


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_orthogonal(d: int, gen: torch.Generator) -> Tensor:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=STATS_DTYPE))
    return q * torch.sign(torch.diagonal(r))[None, :]


def spd_matrix(eigenvalues: Tensor, gen: torch.Generator) -> Tensor:
    """A symmetric matrix with the given spectrum in a random orthonormal basis."""
    q = random_orthogonal(eigenvalues.shape[0], gen)
    cov = (q * eigenvalues.to(STATS_DTYPE)[None, :]) @ q.T
    return (cov + cov.T) / 2


def well_conditioned_cov(d: int, gen: torch.Generator, *, low: float = 0.5, high: float = 2.0) -> Tensor:
    """A random SPD matrix with eigenvalues uniform in [low, high] (condition number <= high / low)."""
    eigenvalues = low + (high - low) * torch.rand(d, generator=gen, dtype=STATS_DTYPE)
    return spd_matrix(eigenvalues, gen)


def random_stats(d: int, gen: torch.Generator, *, n: int = 10_000, mean_scale: float = 1.0) -> GaussianStats:
    """Well-conditioned Gaussian statistics built directly (no sampling)."""
    mean = mean_scale * torch.randn(d, generator=gen, dtype=STATS_DTYPE)
    return GaussianStats(n=n, mean=mean, cov=well_conditioned_cov(d, gen))


def sample_gaussian(n: int, mean: Tensor, cov: Tensor, gen: torch.Generator) -> Tensor:
    """``n`` rows from N(mean, cov), float64 (cov may be singular: a symmetric square root is used)."""
    eigvals, eigvecs = torch.linalg.eigh(cov.to(STATS_DTYPE))
    root = eigvecs * eigvals.clamp(min=0).sqrt()[None, :]
    z = torch.randn(n, mean.shape[0], generator=gen, dtype=STATS_DTYPE)
    return mean.to(STATS_DTYPE) + z @ root.T
