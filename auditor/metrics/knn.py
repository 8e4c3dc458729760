"""The exact, chunked k-nearest-neighbour engine beneath every neighbour metric.

The three all-pairs products (real-real, synthetic-synthetic, real-synthetic) are each computed once,
block by block, and reduced on the fly to the O(N) per-sample quantities the metrics need, so no N x N
matrix ever exists: peak working memory is O(chunk x N), with the chunk sized from a memory budget.

Conventions follow prdc (Naeem et al. 2020): a sample's radius is the distance to its k-th nearest
neighbour *excluding itself*, and ball membership is a strict ``<`` comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from auditor.errors import TooFewSamplesError

DEFAULT_MEMORY_BUDGET_BYTES = 128 << 20
# Temporaries alive per distance entry in the widest step (distances, comparison mask, top-k work).
_TEMPORARIES_PER_ENTRY = 3
# On a CPU a block is also kept to cache-friendly sizes (1024 rows: a 1024 x 1024 float32 tile is 4 MiB),
# whatever the memory budget allows: streaming one N x N block through the caches is slower than
# several tiles, and the symmetric pass only saves work with more than one tile. GPUs take the budget.
CPU_BLOCK_ROWS = 1024


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


def _block_sq_distances(a: Tensor, a_sq: Tensor, b: Tensor, b_sq: Tensor) -> Tensor:
    """Squared distances ||a||^2 + ||b||^2 - 2ab: one matmul per block.

    The engine compares and reduces squared distances (monotone in the distance, so every order,
    minimum and strict ``<`` is the same) and takes square roots only of the O(N) results; rounding
    can leave tiny negatives, clamped there.
    """
    return torch.addmm(a_sq[:, None] + b_sq[None, :], a, b.T, beta=1.0, alpha=-2.0)


def _distance(sq: Tensor) -> Tensor:
    return sq.clamp(min=0.0).sqrt()


def _block_distances(a: Tensor, a_sq: Tensor, b: Tensor, b_sq: Tensor) -> Tensor:
    return _distance(_block_sq_distances(a, a_sq, b, b_sq))


def _merge_smallest(best: Tensor, candidates: Tensor, count: int) -> Tensor:
    """The ``count`` smallest per row of the union of two per-row candidate sets, ascending."""
    return torch.topk(torch.cat([best, candidates], dim=1), count, dim=1, largest=False, sorted=True).values


def within_set_radii(x: Tensor, k: int, *, budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES) -> NeighbourRadii:
    """k-th and 1st nearest-neighbour distances of each row of ``x`` to the other rows.

    The distance matrix is symmetric, so only the tiles on and above the diagonal are computed: each
    tile updates the running k+1 smallest distances of its rows (from the tile) and of its columns
    (from its transpose). Half the matrix products of a row-by-row pass, same result.
    """
    n = x.shape[0]
    if n < k + 1:
        raise TooFewSamplesError(
            f"{n} samples is too few for nearest_k={k}: need at least {k + 1}",
            details={"n": n, "nearest_k": k},
        )
    x_sq = _sq_norms(x)
    keep = k + 1
    best = torch.full((n, keep), float("inf"), dtype=x.dtype, device=x.device)
    tile = max(keep, int(math.sqrt(budget_bytes / (x.element_size() * _TEMPORARIES_PER_ENTRY))))
    if x.device.type == "cpu":
        tile = max(keep, min(tile, CPU_BLOCK_ROWS))
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        for j0 in range(i0, n, tile):
            j1 = min(n, j0 + tile)
            d = _block_sq_distances(x[i0:i1], x_sq[i0:i1], x[j0:j1], x_sq[j0:j1])
            if i0 == j0:
                # The distance of a sample to itself is exactly zero (as in sklearn/prdc), so it is
                # always among the k+1 smallest: "k-th excluding self" is the (k+1)-th smallest.
                d.fill_diagonal_(0.0)
            rows_k = min(keep, j1 - j0)
            best[i0:i1] = _merge_smallest(
                best[i0:i1], torch.topk(d, rows_k, dim=1, largest=False).values, keep
            )
            if j0 != i0:
                cols_k = min(keep, i1 - i0)
                best[j0:j1] = _merge_smallest(
                    best[j0:j1], torch.topk(d, cols_k, dim=0, largest=False).values.T, keep
                )
    return NeighbourRadii(kth=_distance(best[:, k]), nearest=_distance(best[:, 1]), k=k)


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

    def centred(x: Tensor) -> Tensor:
        return (x.to(wide) - shift).to(dtype)

    # One centred copy alive at a time: the synthetic copy serves the synthetic-synthetic pass and is
    # dropped; the cross pass centres synthetic rows block by block.
    synthetic_radii = within_set_radii(centred(synthetic), k, budget_bytes=budget_bytes)
    source_synthetic = synthetic
    real = centred(real)
    if real_radii is None:
        real_radii = within_set_radii(real, k, budget_bytes=budget_bytes)

    n, m = real.shape[0], source_synthetic.shape[0]
    r_sq = _sq_norms(real)
    # Radii squared once; comparisons happen between squared quantities.
    real_kth_sq = real_radii.kth.to(dtype) ** 2
    synthetic_kth_sq = synthetic_radii.kth.to(dtype) ** 2
    ball_count = torch.empty(m, dtype=torch.int64, device=real.device)
    nearest_real = torch.empty(m, dtype=dtype, device=real.device)
    nearest_real_index = torch.empty(m, dtype=torch.int64, device=real.device)
    real_in_synthetic_ball = torch.zeros(n, dtype=torch.bool, device=real.device)
    real_nearest_synthetic = torch.full((n,), float("inf"), dtype=dtype, device=real.device)

    # Blocks of synthetic rows against all real columns: the per-synthetic reductions (ball count,
    # nearest real and its index) run along rows, which is several times faster than along columns;
    # the per-real ones (any, min) are cheap column reductions folded across blocks.
    rows = chunk_rows(n, real.element_size(), budget_bytes)
    if real.device.type == "cpu":
        rows = min(rows, CPU_BLOCK_ROWS)
    for start in range(0, m, rows):
        stop = min(m, start + rows)
        block = centred(source_synthetic[start:stop])
        d = _block_sq_distances(block, _sq_norms(block), real, r_sq)  # (rows, n), squared
        ball_count[start:stop] = (d < real_kth_sq[None, :]).sum(dim=1, dtype=torch.int32)
        block_min, block_arg = d.min(dim=1)
        nearest_real[start:stop] = block_min
        nearest_real_index[start:stop] = block_arg
        real_in_synthetic_ball |= (d < synthetic_kth_sq[start:stop, None]).any(dim=0)
        torch.minimum(real_nearest_synthetic, d.amin(dim=0), out=real_nearest_synthetic)

    return KnnGraph(
        k=k,
        real=real_radii,
        synthetic=synthetic_radii,
        synthetic_real_ball_count=ball_count,
        synthetic_nearest_real=_distance(nearest_real),
        synthetic_nearest_real_index=nearest_real_index,
        real_in_synthetic_ball=real_in_synthetic_ball,
        real_nearest_synthetic=_distance(real_nearest_synthetic),
    )
