"""Mode collapse: ``mode_coverage`` and ``mode_jsd``.

The real embeddings are clustered with k-means (K from N: round(sqrt(N / 10)) clamped to [2, 64]); every
sample of either side is assigned to its nearest real centroid. With p_j the real and q_j the synthetic
fraction in mode j:

- ``mode_coverage`` = fraction of real modes with q_j >= 0.1 * p_j (the mode receives at least 10% of
  the synthetic mass it should): dropped modes lower it.
- ``mode_jsd`` = Jensen-Shannon divergence of p and q, base 2 (0 = same mode histogram, 1 = disjoint):
  dropped, shrunken and over-produced modes raise it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from auditor.metrics.knn import DEFAULT_MEMORY_BUDGET_BYTES, _block_distances, _sq_norms, chunk_rows

MIN_MODE_SHARE = 0.1
KMEANS_ITERATIONS = 50


@dataclass(frozen=True)
class ModeHistogram:
    real_counts: Tensor  # (K,) int64
    synthetic_counts: Tensor  # (K,) int64

    @property
    def real_share(self) -> Tensor:
        return self.real_counts.double() / self.real_counts.sum()

    @property
    def synthetic_share(self) -> Tensor:
        return self.synthetic_counts.double() / self.synthetic_counts.sum().clamp(min=1)


def choose_num_modes(n: int) -> int:
    return int(min(64, max(2, round(math.sqrt(n / 10)))))


def assign_to_centroids(
    x: Tensor, centroids: Tensor, *, budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES
) -> Tensor:
    c_sq = _sq_norms(centroids)
    labels = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    rows = chunk_rows(centroids.shape[0], x.element_size(), budget_bytes)
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows]
        labels[start : start + rows] = _block_distances(block, _sq_norms(block), centroids, c_sq).argmin(1)
    return labels


def kmeans(x: Tensor, k: int, *, generator: torch.Generator, iterations: int = KMEANS_ITERATIONS) -> Tensor:
    """Lloyd's k-means with k-means++ seeding; returns the (k, d) centroids."""
    n = x.shape[0]
    x = x.to(torch.float64)
    first = int(torch.randint(n, (1,), generator=generator))
    centroids = [x[first]]
    nearest_sq = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, k):
        probs = nearest_sq.clamp(min=0).cpu()
        pick = (
            int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
            if probs.sum() > 0
            else int(torch.randint(n, (1,), generator=generator))
        )
        centroids.append(x[pick])
        nearest_sq = torch.minimum(nearest_sq, ((x - x[pick]) ** 2).sum(1))
    centres = torch.stack(centroids)
    for _ in range(iterations):
        labels = assign_to_centroids(x, centres)
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        empty = counts == 0
        updated = sums / counts.clamp(min=1)[:, None]
        # An empty cluster keeps its old centre instead of collapsing to the origin.
        updated[empty] = centres[empty]
        if torch.allclose(updated, centres):
            centres = updated
            break
        centres = updated
    return centres


def mode_histogram(real_labels: Tensor, synthetic_labels: Tensor, k: int) -> ModeHistogram:
    return ModeHistogram(
        real_counts=torch.bincount(real_labels, minlength=k),
        synthetic_counts=torch.bincount(synthetic_labels, minlength=k),
    )


def mode_coverage(hist: ModeHistogram) -> Tensor:
    p, q = hist.real_share, hist.synthetic_share
    present = p > 0
    return (q[present] >= MIN_MODE_SHARE * p[present]).double().mean()


def jensen_shannon(p: Tensor, q: Tensor) -> Tensor:
    mix = (p + q) / 2

    def kl(a: Tensor, b: Tensor) -> Tensor:
        keep = a > 0
        return (a[keep] * (a[keep] / b[keep]).log2()).sum()

    return ((kl(p, mix) + kl(q, mix)) / 2).clamp(min=0, max=1)


def mode_jsd(hist: ModeHistogram) -> Tensor:
    return jensen_shannon(hist.real_share, hist.synthetic_share)
