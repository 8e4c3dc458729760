"""Gaussian sufficient statistics: mean and covariance in float64, mergeable across shards."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# float64: the covariance of 2048-d features loses digits in float32, and FID subtracts large traces.
STATS_DTYPE = torch.float64


@dataclass(frozen=True)
class GaussianStats:
    n: int
    mean: Tensor  # (d,) float64
    cov: Tensor  # (d, d) float64, unbiased (n - 1)

    @classmethod
    def from_features(cls, x: Tensor, *, chunk_rows: int = 8192) -> GaussianStats:
        """Mean and unbiased covariance, accumulated in float64 chunks (two passes, no cancellation)."""
        n, d = x.shape
        mean = torch.zeros(d, dtype=STATS_DTYPE, device=x.device)
        for start in range(0, n, chunk_rows):
            mean += x[start : start + chunk_rows].to(STATS_DTYPE).sum(dim=0)
        mean /= n
        scatter = torch.zeros(d, d, dtype=STATS_DTYPE, device=x.device)
        for start in range(0, n, chunk_rows):
            centred = x[start : start + chunk_rows].to(STATS_DTYPE) - mean
            scatter += centred.T @ centred
        cov = scatter / max(n - 1, 1)
        return cls(n=n, mean=mean, cov=cov)

    def merge(self, other: GaussianStats) -> GaussianStats:
        """Statistics of the union of two disjoint sample sets (Chan et al. pairwise update)."""
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        scatter = (
            self.cov * (self.n - 1)
            + other.cov * (other.n - 1)
            + torch.outer(delta, delta) * (self.n * other.n / n)
        )
        return GaussianStats(n=n, mean=mean, cov=scatter / max(n - 1, 1))

    def to(self, device: torch.device | str) -> GaussianStats:
        return GaussianStats(n=self.n, mean=self.mean.to(device), cov=self.cov.to(device))


def weighted_stats(x: Tensor, weights: Tensor) -> GaussianStats:
    """Statistics of a weighted sample (bootstrap replicates as multinomial counts / n)."""
    xw = x.to(STATS_DTYPE)
    w = weights.to(STATS_DTYPE)
    w = w / w.sum()
    mean = w @ xw
    centred = xw - mean
    cov = (centred * w[:, None]).T @ centred
    n = x.shape[0]
    return GaussianStats(n=n, mean=mean, cov=cov * (n / max(n - 1, 1)))
