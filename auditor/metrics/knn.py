"""The exact, chunked k-nearest-neighbour engine beneath every neighbour metric.

The three all-pairs products (real-real, synthetic-synthetic, real-synthetic) are each computed once,
block by block, and reduced on the fly to the O(N) per-sample quantities the metrics need, so no N x N
matrix ever exists: peak working memory is O(chunk x N), with the chunk sized from a memory budget.

Conventions follow prdc (Naeem et al. 2020): a sample's radius is the distance to its k-th nearest
neighbour *excluding itself*, and ball membership is a strict ``<`` comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from auditor.errors import TooFewSamplesError

DEFAULT_MEMORY_BUDGET_BYTES = 256 << 20
# Temporaries alive per distance entry in the widest step (distances, comparison mask, top-k work).
_TEMPORARIES_PER_ENTRY = 3


@dataclass(frozen=True)
class NeighbourRadii:
    """Within-set neighbour distances of one sample set."""

    kth: Tensor  # (n,) distance to the k-th nearest other sample (the prdc radius)
    nearest: Tensor  # (n,) distance to the nearest other sample
    k: int


@dataclass(frozen=True)
class KnnGraph:
    """Everything the neighbour metrics read, as per-sample vectors (all O(N))."""

    k: int
    real: NeighbourRadii
    synthetic: NeighbourRadii
    synthetic_real_ball_count: Tensor  # (m,) how many real balls (radius real.kth) contain each synthetic
    synthetic_nearest_real: Tensor  # (m,) distance to the nearest real sample
    synthetic_nearest_real_index: Tensor  # (m,) index of that real sample
    real_in_synthetic_ball: Tensor  # (n,) bool: inside some synthetic sample's ball (radius synthetic.kth)
    real_nearest_synthetic: Tensor  # (n,) distance to the nearest synthetic sample


def chunk_rows(n_columns: int, element_bytes: int, budget_bytes: int) -> int:
    """Rows per block so that a block's temporaries stay within ``budget_bytes``."""
    per_row = max(1, n_columns * element_bytes * _TEMPORARIES_PER_ENTRY)
    return max(1, min(budget_bytes // per_row, 1 << 20))


def _sq_norms(x: Tensor) -> Tensor:
    return (x * x).sum(dim=1)


def _block_distances(a: Tensor, a_sq: Tensor, b: Tensor, b_sq: Tensor) -> Tensor:
    # ||a||^2 + ||b||^2 - 2ab: one matmul per block; clamped because rounding can go below zero.
    d2 = torch.addmm(a_sq[:, None] + b_sq[None, :], a, b.T, beta=1.0, alpha=-2.0)
    return d2.clamp_(min=0.0).sqrt_()


def within_set_radii(x: Tensor, k: int, *, budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES) -> NeighbourRadii:
    """k-th and 1st nearest-neighbour distances of each row of ``x`` to the other rows."""
    n = x.shape[0]
    if n < k + 1:
        raise TooFewSamplesError(
            f"{n} samples is too few for nearest_k={k}: need at least {k + 1}",
            details={"n": n, "nearest_k": k},
        )
    x_sq = _sq_norms(x)
    kth = torch.empty(n, dtype=x.dtype, device=x.device)
    nearest = torch.empty(n, dtype=x.dtype, device=x.device)
    rows = chunk_rows(n, x.element_size(), budget_bytes)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        d = _block_distances(x[start:stop], x_sq[start:stop], x, x_sq)
        # The distance of a sample to itself is exactly zero (as in sklearn/prdc), so it is always
        # among the k+1 smallest and "k-th excluding self" is the (k+1)-th smallest of the row.
        idx = torch.arange(start, stop, device=x.device)
        d[idx - start, idx] = 0.0
        smallest = torch.topk(d, k + 1, dim=1, largest=False, sorted=True).values
        kth[start:stop] = smallest[:, k]
        nearest[start:stop] = smallest[:, 1]
    return NeighbourRadii(kth=kth, nearest=nearest, k=k)


def build_knn_graph(
    real: Tensor,
    synthetic: Tensor,
    k: int,
    *,
    real_radii: NeighbourRadii | None = None,
    budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    dtype: torch.dtype | None = None,
) -> KnnGraph:
    """Compute the real-real, synthetic-synthetic and real-synthetic neighbour structure once.

    ``real_radii`` lets a caller reuse the real side (e.g. between a synthetic set and a holdout).
    ``dtype`` defaults to the input's; float32 is exact enough once both sets are centred on the
    real mean (done here: distances are translation invariant, and centring shrinks the norms whose
    cancellation limits the accuracy of the matmul expansion).
    """
    dtype = dtype or real.dtype
    # Centre in the wider of the input and working dtypes, then cast: casting float64 input to float32
    # first would round away the digits that centring is meant to keep.
    wide = torch.promote_types(torch.promote_types(real.dtype, synthetic.dtype), dtype)
    shift = real.to(wide).mean(dim=0, keepdim=True)
    real = (real.to(wide) - shift).to(dtype)
    synthetic = (synthetic.to(wide) - shift).to(dtype)
    if real_radii is None:
        real_radii = within_set_radii(real, k, budget_bytes=budget_bytes)
    synthetic_radii = within_set_radii(synthetic, k, budget_bytes=budget_bytes)

    n, m = real.shape[0], synthetic.shape[0]
    r_sq, s_sq = _sq_norms(real), _sq_norms(synthetic)
    real_kth = real_radii.kth.to(dtype)
    ball_count = torch.empty(m, dtype=torch.int64, device=real.device)
    nearest_real = torch.empty(m, dtype=dtype, device=real.device)
    nearest_real_index = torch.empty(m, dtype=torch.int64, device=real.device)
    real_in_synthetic_ball = torch.zeros(n, dtype=torch.bool, device=real.device)
    real_nearest_synthetic = torch.full((n,), float("inf"), dtype=dtype, device=real.device)

    # Blocks of synthetic rows against all real columns: the per-synthetic reductions (ball count,
    # nearest real and its index) run along rows, which is several times faster than along columns;
    # the per-real ones (any, min) are cheap column reductions folded across blocks.
    rows = chunk_rows(n, real.element_size(), budget_bytes)
    for start in range(0, m, rows):
        stop = min(m, start + rows)
        d = _block_distances(synthetic[start:stop], s_sq[start:stop], real, r_sq)  # (rows, n)
        ball_count[start:stop] = (d < real_kth[None, :]).sum(dim=1, dtype=torch.int32)
        block_min, block_arg = d.min(dim=1)
        nearest_real[start:stop] = block_min
        nearest_real_index[start:stop] = block_arg
        real_in_synthetic_ball |= (d < synthetic_radii.kth[start:stop, None]).any(dim=0)
        torch.minimum(real_nearest_synthetic, d.amin(dim=0), out=real_nearest_synthetic)

    return KnnGraph(
        k=k,
        real=real_radii,
        synthetic=synthetic_radii,
        synthetic_real_ball_count=ball_count,
        synthetic_nearest_real=nearest_real,
        synthetic_nearest_real_index=nearest_real_index,
        real_in_synthetic_ball=real_in_synthetic_ball,
        real_nearest_synthetic=real_nearest_synthetic,
    )
