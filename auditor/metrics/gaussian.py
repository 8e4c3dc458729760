"""Gaussian sufficient statistics: mean and covariance in float64, mergeable across shards.

Both constructors make one pass over the data in row chunks. Each chunk is converted to float64 once,
already shifted by a provisional mean (that of the first rows), into one reused buffer; the pass
accumulates the shifted sum and the Gram matrix of the shifted rows, and the covariance is the Gram
matrix minus the outer product of the (small) residual mean. On CPU the Gram matrix is accumulated as
its upper block triangle only (torch exposes no ``syrk``): k = d / GRAM_BLOCK block-row products do
(k + 1) / 2k of a full product's work, 62% at d = 2048, and the lower triangle is mirrored at the end.
On CUDA one full product per chunk is faster than several small ones.

Shifting makes the result independent of a common offset: features + 1e4 in float32 keep float64
accuracy. First rows unrepresentative of the rest (sorted or concatenated data) leave a residual mean
comparable to the spread; where it carries more than half of a coordinate's second moment the
subtraction would lose digits, and the pass is repeated once with the exact mean as the shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# float64: the covariance of 2048-d features loses digits in float32, and FID subtracts large traces.
STATS_DTYPE = torch.float64
DEFAULT_CHUNK_ROWS = 8192
# Columns per block row of the CPU upper-triangular Gram product: large enough for full-speed GEMMs.
GRAM_BLOCK = 512
# The provisional shift: the mean of the first rows. Its distance from the mean is then ~1/32 of a
# standard deviation, whose share of the second moment (~1e-3) costs no digits.
PROVISIONAL_ROWS = 1024
# Repeat the pass with the exact mean where the residual mean's share of a coordinate's raw second
# moment exceeds this: then the final subtraction loses at most one bit (a factor 1 / (1 - share)).
REFINE_SHARE = 0.5


@dataclass(frozen=True)
class GaussianStats:
    n: int
    mean: Tensor  # (d,) float64
    cov: Tensor  # (d, d) float64, unbiased (n - 1)

    @classmethod
    def from_features(cls, x: Tensor, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> GaussianStats:
        """Mean and unbiased covariance in float64, from one pass over ``x`` (any float dtype)."""
        n, d = x.shape
        if n == 0:
            nan = torch.full((d,), math.nan, dtype=STATS_DTYPE, device=x.device)
            return cls(n=0, mean=nan, cov=torch.zeros(d, d, dtype=STATS_DTYPE, device=x.device))
        mean, scatter = _shifted_moments(x, None, chunk_rows)
        return cls(n=n, mean=mean, cov=scatter.div_(max(n - 1, 1)))

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


def weighted_stats(x: Tensor, weights: Tensor, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> GaussianStats:
    """Statistics of a weighted sample (bootstrap replicates as multinomial counts / n).

    The weights are normalised to sum 1 and the covariance is scaled by n / (n - 1), n = rows of ``x``:
    with multinomial counts this is the unbiased covariance of the resample. Zero-weight rows (about a
    third of a bootstrap replicate) are skipped, and no full-size copy of ``x`` is made. ``weights`` may
    live on another device than ``x`` (CPU bootstrap counts beside CUDA features): they are moved.
    """
    n = x.shape[0]
    mean, scatter = _shifted_moments(x, weights, chunk_rows)
    return GaussianStats(n=n, mean=mean, cov=scatter.mul_(n / max(n - 1, 1)))


def _shifted_moments(x: Tensor, weights: Tensor | None, chunk_rows: int) -> tuple[Tensor, Tensor]:
    """(mean, scatter): the weighted mean and sum_i w_i (x_i - mean)(x_i - mean)^T, in float64.

    ``weights=None`` means unit weights (scatter = (n - 1) cov); otherwise they are normalised to sum 1.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    n = x.shape[0]
    w: Tensor | None = None
    if weights is not None:
        if weights.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {tuple(weights.shape)}")
        w = weights.to(device=x.device, dtype=STATS_DTYPE)
        w = w / w.sum()
    total = float(n) if w is None else 1.0
    shift = x[:PROVISIONAL_ROWS].to(STATS_DTYPE).mean(dim=0)
    offset, gram = _gram_pass(x, shift, w, chunk_rows)
    residual = offset / total
    # share_j = total * residual_j^2 / gram_jj <= 1 (Cauchy-Schwarz); 0 / 0 (a constant column) is 0.
    if bool((total * residual.square() > REFINE_SHARE * gram.diagonal()).any()):
        shift = shift + residual
        offset, gram = _gram_pass(x, shift, w, chunk_rows)
        residual = offset / total
    gram.addr_(residual, residual, alpha=-total)
    _mirror_upper_(gram)  # after the update: its vectorised and scalar parts round differently
    return shift + residual, gram


def _gram_pass(x: Tensor, shift: Tensor, w: Tensor | None, chunk_rows: int) -> tuple[Tensor, Tensor]:
    """(sum_i w_i y_i, sum_i w_i y_i y_i^T) of the shifted rows y_i = x_i - shift, in float64.

    Only the upper block triangle of the second matrix is filled on CPU; ``_mirror_upper_`` completes it.
    """
    n, d = x.shape
    device = x.device
    offset = torch.zeros(d, dtype=STATS_DTYPE, device=device)
    gram = torch.zeros(d, d, dtype=STATS_DTYPE, device=device)
    # One float64 buffer, reused by every chunk (no page faults for a fresh chunk-sized array each time).
    buffer = torch.empty(min(n, chunk_rows), d, dtype=STATS_DTYPE, device=device)
    signed = w is not None and bool((w < 0).any())
    for start in range(0, n, chunk_rows):
        rows = x[start : start + chunk_rows]
        if w is None:
            y = _shifted_into(buffer[: rows.shape[0]], rows, shift)
            offset += y.sum(dim=0)
            _add_gram_upper_(gram, y)
            continue
        wc = w[start : start + chunk_rows]
        if signed:  # not a bootstrap: (y * w)^T y in full
            y = _shifted_into(buffer[: rows.shape[0]], rows, shift)
            offset.addmv_(y.T, wc)
            gram.addmm_((y * wc[:, None]).T, y)
            continue
        keep = wc.nonzero().squeeze(1)
        if keep.numel() == 0:
            continue
        wc = wc[keep]
        y = _shifted_into(buffer[: keep.numel()], rows.index_select(0, keep), shift)
        offset.addmv_(y.T, wc)
        y.mul_(wc.sqrt()[:, None])  # (sqrt(w) y)^T (sqrt(w) y): a symmetric product again
        _add_gram_upper_(gram, y)
    return offset, gram


def _shifted_into(out: Tensor, rows: Tensor, shift: Tensor) -> Tensor:
    """``out = rows - shift`` in float64. For float64 rows one kernel; otherwise a converting copy then
    an in-place shift, 3x faster on CPU than torch's mixed-dtype subtraction (same bits)."""
    if rows.dtype == STATS_DTYPE:
        return torch.sub(rows, shift, out=out)
    return out.copy_(rows).sub_(shift)


def _gram_block(gram: Tensor) -> int:
    """Columns per block row: GRAM_BLOCK on CPU for d >= 2 blocks; elsewhere (CUDA) one full product."""
    d = gram.shape[0]
    return GRAM_BLOCK if gram.device.type == "cpu" and d >= 2 * GRAM_BLOCK else d


def _add_gram_upper_(gram: Tensor, y: Tensor) -> None:
    """gram += y^T y on the upper block triangle (the diagonal blocks in full)."""
    d = gram.shape[0]
    block = _gram_block(gram)
    if block >= d:
        gram.addmm_(y.T, y)
        return
    for i in range(0, d, block):
        gram[i : i + block, i:].addmm_(y[:, i : i + block].T, y[:, i:])


def _mirror_upper_(gram: Tensor) -> None:
    """Make ``gram`` exactly symmetric from its upper triangle (block by block: no d x d temporary)."""
    d = gram.shape[0]
    block = _gram_block(gram)
    for i in range(0, d, block):
        diag = gram[i : i + block, i : i + block]
        diag.copy_(diag.triu() + diag.triu(1).T)
        gram[i + block :, i : i + block] = gram[i : i + block, i + block :].T
