"""Mode collapse: ``mode_coverage`` and ``mode_jsd``.

The real embeddings are clustered with k-means (K from N: round(sqrt(N / 10)) clamped to [2, 64]); every
sample of either side is assigned to its nearest real centroid. With p_j the real and q_j the synthetic
fraction in mode j:

- ``mode_coverage`` = fraction of real modes with q_j >= 0.1 * p_j (the mode receives at least 10% of
  the synthetic mass it should): dropped modes lower it.
- ``mode_jsd`` = Jensen-Shannon divergence of p and q, base 2 (0 = same mode histogram, 1 = disjoint):
  dropped, shrunken and over-produced modes raise it.

The modes come from k-means with greedy k-means++ seeds, best of three seeded runs. The seeding does not
depend on the order of the rows: k-means runs on the rows in canonical order (sorted by their bytes,
:mod:`auditor.metrics.canonical`), so the seeded draws pick the same rows and Lloyd's sums add the same
numbers in the same order whatever the input order; the centroids, hence every label and both metrics,
are identical (bit for bit) for any permutation of the rows, duplicated rows included.

Histograms may be batched: counts of shape (..., K) give metrics of shape (...), one per histogram (the
bootstrap's replicates); :func:`mode_counts` counts the labels of many resamples at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from auditor.metrics import MIN_MODE_SHARE
from auditor.metrics.canonical import canonical_rows
from auditor.metrics.knn import DEFAULT_MEMORY_BUDGET_BYTES, _block_distances, _sq_norms, chunk_rows

KMEANS_ITERATIONS = 50
KMEANS_RESTARTS = 3


@dataclass(frozen=True)
class ModeHistogram:
    real_counts: Tensor  # (K,) int64, or (..., K): a batch of histograms
    synthetic_counts: Tensor  # (K,) int64, or (..., K)

    @property
    def real_share(self) -> Tensor:
        return self.real_counts.double() / self.real_counts.sum(-1, keepdim=True)

    @property
    def synthetic_share(self) -> Tensor:
        return self.synthetic_counts.double() / self.synthetic_counts.sum(-1, keepdim=True).clamp(min=1)


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


def centroid_distances(
    x: Tensor, centroids: Tensor, labels: Tensor, *, budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES
) -> Tensor:
    """(n,) float64 distance of each row of ``x`` to its own centroid ``centroids[labels]``.

    Direct differences in float64 (not the expanded ``|x|^2 - 2 x.c + |c|^2``, which loses the small
    distances that decide which samples are a mode's most typical), in blocks within the budget.
    """
    out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    rows = chunk_rows(x.shape[1], 8, budget_bytes)
    labels = labels.to(x.device)
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows].double()
        own = centroids[labels[start : start + rows]].double()
        out[start : start + rows] = torch.linalg.vector_norm(block - own, dim=1)
    return out


def _greedy_kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding, greedy variant (Arthur & Vassilvitskii 2007; as scikit-learn does it).

    Each new centre is the best of ``2 + log k`` candidates drawn proportionally to the squared distance
    to the nearest centre so far: the one that lowers the total potential most. Plain k-means++ (one
    candidate) too often seeds two centres in one mode and none in another.
    """
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [x[first]]
    nearest_sq = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, k):
        weights = nearest_sq.clamp(min=0).cpu()
        if float(weights.sum()) <= 0:
            picks = torch.randint(n, (trials,), generator=generator)
        else:
            picks = torch.multinomial(weights / weights.sum(), trials, replacement=True, generator=generator)
        candidates = x[picks.to(x.device)]
        cand_sq = torch.cdist(candidates, x).pow(2)  # (trials, n)
        potentials = torch.minimum(nearest_sq[None, :], cand_sq).sum(1)
        best = int(potentials.argmin())
        centres.append(candidates[best])
        nearest_sq = torch.minimum(nearest_sq, cand_sq[best])
    return torch.stack(centres)


def kmeans(
    x: Tensor,
    k: int,
    *,
    generator: torch.Generator,
    iterations: int = KMEANS_ITERATIONS,
    restarts: int = KMEANS_RESTARTS,
) -> Tensor:
    """Lloyd's k-means from greedy k-means++ seeds; the best of ``restarts`` runs (lowest inertia).

    Runs on the rows in canonical order, so the centroids do not depend on the order of ``x``'s rows.
    """
    x = canonical_rows(x.to(torch.float64))
    best_centres, best_inertia = None, float("inf")
    for _ in range(restarts):
        centres = _greedy_kmeans_plus_plus(x, k, generator)
        for _ in range(iterations):
            labels = assign_to_centroids(x, centres)
            sums = torch.zeros_like(centres).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=k).to(x.dtype)
            empty = counts == 0
            updated = sums / counts.clamp(min=1)[:, None]
            # An empty cluster keeps its old centre instead of collapsing to the origin.
            updated[empty] = centres[empty]
            converged = torch.allclose(updated, centres)
            centres = updated
            if converged:
                break
        labels = assign_to_centroids(x, centres)
        inertia = float(((x - centres[labels]) ** 2).sum())
        if inertia < best_inertia:
            best_centres, best_inertia = centres, inertia
    assert best_centres is not None
    return best_centres


def mode_counts(labels: Tensor, k: int) -> Tensor:
    """Per-mode counts of every row of ``labels`` (..., n): shape (..., k), one bincount for all."""
    batch = labels.shape[:-1]
    rows = labels.reshape(-1, labels.shape[-1])
    offsets = torch.arange(rows.shape[0], device=labels.device)[:, None] * k
    counts = torch.bincount((rows + offsets).reshape(-1), minlength=rows.shape[0] * k)
    return counts.reshape(*batch, k)


def mode_histogram(real_labels: Tensor, synthetic_labels: Tensor, k: int) -> ModeHistogram:
    return ModeHistogram(
        real_counts=torch.bincount(real_labels, minlength=k),
        synthetic_counts=torch.bincount(synthetic_labels, minlength=k),
    )


def mode_coverage(hist: ModeHistogram) -> Tensor:
    p, q = hist.real_share, hist.synthetic_share
    present = p > 0
    covered = (q >= MIN_MODE_SHARE * p) & present
    return covered.sum(-1).double() / present.sum(-1).double()


def jensen_shannon(p: Tensor, q: Tensor) -> Tensor:
    """JS divergence (bits) of distributions along the last dimension."""
    mix = (p + q) / 2

    def kl(a: Tensor, b: Tensor) -> Tensor:
        # 0 log 0 = 0; where a > 0, b >= a / 2 > 0
        return torch.where(a > 0, a * (a / b).log2(), torch.zeros_like(a)).sum(-1)

    return ((kl(p, mix) + kl(q, mix)) / 2).clamp(min=0, max=1)


def mode_jsd(hist: ModeHistogram) -> Tensor:
    return jensen_shannon(hist.real_share, hist.synthetic_share)
