"""The exact, chunked k-nearest-neighbour engine beneath every neighbour metric.

The three all-pairs products (real-real, synthetic-synthetic, real-synthetic) are each computed once,
tile by tile, and reduced on the fly to the O(N) per-sample quantities the metrics need, so no N x N
matrix ever exists: peak working memory is O(tile x N), with tiles sized from a memory budget.

Conventions follow prdc (Naeem et al. 2020): a sample's radius is the distance to its k-th nearest
neighbour *excluding itself*, and ball membership is a strict ``<`` comparison.

Exact on ties. Real data is full of them (memorized copies, one-hot tables, quantised features), and a
strict ``<`` against a radius decides a tie by rounding unless both sides are the same quantity. So:

- The fast pass works on squared distances from the matmul expansion ||a||^2 + ||b||^2 - 2ab (in the
  working dtype, on data centred on its mean) and never decides anything within its rounding error of
  a boundary. That error is bounded per pair by ``tau * (||a||^2 + ||b||^2)`` (:func:`rounding_bound`:
  the expansion, the centring and the cast; the smaller of the worst case and a probabilistic bound
  that no measured error comes within 10x of).
- Every value the graph holds, and every comparison within that bound of a boundary, is decided on
  *exact* squared distances: float64 sums of squared direct differences of the original (uncentred)
  coordinates, computed in fixed-shape batches so that one pair always gives the same bits
  (:class:`ExactDistances`). Identical rows are at distance exactly 0, the distance is symmetric to the
  bit, and the radius compared with a cross distance is the same kind of number.
- Radii are kept squared and compared squared: no square root and square again before the ``<``.

On continuous data only a handful of pairs per sample fall within the bound, so the exact work is
O(N d) beside the O(N^2 d) products; on heavily tied data more pairs are re-checked, never skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from auditor.errors import TooFewSamplesError

DEFAULT_MEMORY_BUDGET_BYTES = 128 << 20
# Temporaries alive per distance entry in the widest step (distances, comparison mask, top-k work).
_TEMPORARIES_PER_ENTRY = 3
# On a CPU a tile is also kept to cache-friendly sizes (1024 x 1024 float32 is 4 MiB), whatever the
# memory budget allows: the several reductions of a tile then read it from cache, not from memory,
# and the symmetric pass only saves work with more than one tile. GPUs take the budget.
CPU_BLOCK_ROWS = 1024
_MIN_TILE = 8
# Spare candidates kept per row beyond the k + 1 smallest, so that a near-tie at the k-th neighbour
# is usually resolved from the list (a row whose list cannot prove it holds every near-tie is
# recomputed against all rows).
_SPARE_CANDIDATES = 2
# Exact distances are computed in batches of at most this many pairs / float64 elements.
_EXACT_BATCH_PAIRS_MAX = 1 << 16
# On a CPU a batch is 2 MiB of float64 (its buffers are reused, so only cache size argues for smaller
# batches, and per-batch overhead for larger: 8-32 rows at d = 2048 take 1.3-2.5x longer, 128-512 rows
# the same); a GPU takes larger batches, each a few kernel launches.
_EXACT_BATCH_ELEMENTS = {"cpu": 1 << 18, "other": 1 << 22}
# At most this many candidates per sample for its nearest neighbour (see _NearestCandidates).
_NEAREST_CANDIDATES = 16


@dataclass(frozen=True)
class NeighbourRadii:
    """Within-set neighbour distances of one sample set, squared and exact (float64)."""

    kth_sq: Tensor  # (n,) squared distance to the k-th nearest other sample (the prdc radius)
    nearest_sq: Tensor  # (n,) squared distance to the nearest other sample
    k: int
    # (n,) index of that nearest other sample (one of them where several are exactly as near)
    nearest_index: Tensor | None = None

    @property
    def kth(self) -> Tensor:
        return self.kth_sq.sqrt()

    @property
    def nearest(self) -> Tensor:
        return self.nearest_sq.sqrt()


@dataclass(frozen=True)
class KnnGraph:
    """Everything the neighbour metrics read, as per-sample vectors (all O(N)); distances exact."""

    k: int
    real: NeighbourRadii
    synthetic: NeighbourRadii
    synthetic_real_ball_count: Tensor  # (m,) how many real balls (radius real.kth) contain each synthetic
    synthetic_nearest_real_sq: Tensor  # (m,) squared distance to the nearest real sample
    # (m,) index of that real sample; among exactly equidistant ones, one whose own nearest-real gap
    # is largest, so authenticity does not depend on the row order
    synthetic_nearest_real_index: Tensor
    real_in_synthetic_ball: Tensor  # (n,) bool: inside some synthetic sample's ball (radius synthetic.kth)
    real_ball_covered: Tensor  # (n,) bool: the real sample's own ball (radius real.kth) holds a synthetic
    real_nearest_synthetic_sq: Tensor  # (n,) squared distance to the nearest synthetic sample

    @property
    def synthetic_nearest_real(self) -> Tensor:
        return self.synthetic_nearest_real_sq.sqrt()

    @property
    def real_nearest_synthetic(self) -> Tensor:
        return self.real_nearest_synthetic_sq.sqrt()


def chunk_rows(n_columns: int, element_bytes: int, budget_bytes: int) -> int:
    """Rows per block so that a block's temporaries stay within ``budget_bytes``."""
    per_row = max(1, n_columns * element_bytes * _TEMPORARIES_PER_ENTRY)
    return max(1, min(budget_bytes // per_row, 1 << 20))


def _tile_size(x: Tensor, budget_bytes: int, at_least: int = 1) -> int:
    """Side of the square tiles of a pass (at least 8: below that per-tile overhead is all there is)."""
    at_least = max(at_least, _MIN_TILE)
    tile = max(at_least, int(math.sqrt(budget_bytes / (x.element_size() * _TEMPORARIES_PER_ENTRY))))
    if x.device.type == "cpu":
        tile = max(at_least, min(tile, CPU_BLOCK_ROWS))
    return tile


def _sq_norms(x: Tensor) -> Tensor:
    return (x * x).sum(dim=1)


def _block_sq_distances(
    a: Tensor, a_sq: Tensor, b: Tensor, b_sq: Tensor, out: Tensor | None = None
) -> Tensor:
    """Squared distances ||a||^2 + ||b||^2 - 2ab: one matmul per block (approximate: see the module)."""
    if out is None:
        return torch.addmm(a_sq[:, None] + b_sq[None, :], a, b.T, beta=1.0, alpha=-2.0)
    torch.add(a_sq[:, None], b_sq[None, :], out=out)
    return out.addmm_(a, b.T, beta=1.0, alpha=-2.0)


class _TileBuffers:
    """Work tiles allocated once per pass and reused by every tile of it.

    On a CPU a fresh tile-sized temporary costs more than the arithmetic done in it (the allocator
    hands out new pages, and the first touch of each page faults), so each step of a tile writes into
    one of these (``out=``, in place) instead of allocating its result.
    """

    def __init__(self, rows: int, cols: int, dtype: torch.dtype, device: torch.device, count: int) -> None:
        self._flat = [torch.empty(rows * cols, dtype=dtype, device=device) for _ in range(count)]

    def __call__(self, which: int, rows: int, cols: int) -> Tensor:
        return self._flat[which][: rows * cols].view(rows, cols)


def _block_distances(a: Tensor, a_sq: Tensor, b: Tensor, b_sq: Tensor) -> Tensor:
    return _block_sq_distances(a, a_sq, b, b_sq).clamp(min=0.0).sqrt()


# float32 products on a GPU may run in TF32 ("high": 10 mantissa bits) or bfloat16 ("medium": 7).
_FLOAT32_MATMUL_ROUNDOFF = {"highest": 2.0**-24, "high": 2.0**-11, "medium": 2.0**-8}


def _unit_roundoff(dtype: torch.dtype, device: torch.device) -> float:
    if dtype == torch.float32 and device.type != "cpu":
        return _FLOAT32_MATMUL_ROUNDOFF.get(torch.get_float32_matmul_precision(), 2.0**-8)
    return float(torch.finfo(dtype).eps) / 2


def rounding_bound(dtype: torch.dtype, dim: int, device: torch.device) -> float:
    """``tau``: |expansion - exact| <= tau * (||a||^2 + ||b||^2) for every pair (a, b) of centred rows.

    The d-term dot product and the two norms contribute 2 gamma_d, bounded by the smaller of the
    worst case (3d u, Higham ch. 3) and Higham & Mary's probabilistic bound (2019) with lambda = 12
    (24 sqrt(d) u; it fails with probability below 1e-28 per product even at d = 2048); the final
    additions, centring and the cast to the working dtype add 16u, and the float64 exact sum itself
    (2d + 8) u_64; then doubled. The worst case is never approached by blocked FMA products: the
    largest error measured on Gaussian, offset, binary, byte-valued, skewed and duplicated data is
    below 8u at every d from 3 to 2048 (tests/metrics/test_knn_exact.py asserts a 10x margin), and
    the worst case would triple the pairs re-checked exactly at d = 2048. A looser bound only widens
    the band of pairs decided exactly; it never changes a result.
    """
    u = _unit_roundoff(dtype, device)
    u64 = float(torch.finfo(torch.float64).eps) / 2
    products = min(3 * dim, 24 * math.sqrt(dim))
    return 2.0 * ((products + 16) * u + (2 * dim + 8) * u64)


class ExactDistances:
    """Exact squared distances between rows of two original (uncentred) sample sets.

    float64 sums of squared direct differences. A pair's bits must not depend on the batch it falls
    in (ties are decided by equality): on a CPU, torch reduces every row of a batch the same way
    except a batch of one row (split across threads), so single pairs are padded to two; on a GPU
    the reduction's launch shape follows the batch's, so every batch is padded to one fixed shape.
    The gathers and the difference go into buffers made on first use and kept (on a CPU a fresh
    batch-sized temporary costs several times the arithmetic done in it; see :class:`_TileBuffers`).
    """

    def __init__(self, a: Tensor, b: Tensor) -> None:
        self.a, self.b = a, b
        dim = max(1, a.shape[1])
        self.fixed_shape = a.device.type != "cpu"
        elements = _EXACT_BATCH_ELEMENTS["other" if self.fixed_shape else "cpu"]
        self.batch = max(2, min(_EXACT_BATCH_PAIRS_MAX, elements // dim))
        self._buffers: tuple[Tensor, Tensor, Tensor] | None = None

    def _work(self, rows: int) -> tuple[Tensor, Tensor, Tensor]:
        if self._buffers is None:
            rows_max, dim, device = self.batch, self.a.shape[1], self.a.device
            self._buffers = (
                torch.empty(rows_max, dim, dtype=self.a.dtype, device=device),
                torch.empty(rows_max, dim, dtype=self.b.dtype, device=device),
                torch.empty(rows_max, dim, dtype=torch.float64, device=device),
            )
        return self._buffers[0][:rows], self._buffers[1][:rows], self._buffers[2][:rows]

    def __call__(self, ia: Tensor, ib: Tensor) -> Tensor:
        count = int(ia.numel())
        out = torch.empty(count, dtype=torch.float64, device=self.a.device)
        for start in range(0, count, self.batch):
            stop = min(count, start + self.batch)
            rows_a, rows_b = ia[start:stop], ib[start:stop]
            size = self.batch if self.fixed_shape else max(2, stop - start)
            if stop - start < size:  # pad with the pair (0, 0)
                rows_a = torch.cat([rows_a, rows_a.new_zeros(size - (stop - start))])
                rows_b = torch.cat([rows_b, rows_b.new_zeros(size - (stop - start))])
            gathered_a, gathered_b, diff = self._work(size)
            torch.index_select(self.a, 0, rows_a, out=gathered_a)
            torch.index_select(self.b, 0, rows_b, out=gathered_b)
            diff.copy_(gathered_a).sub_(gathered_b)
            out[start:stop] = diff.square_().sum(dim=1)[: stop - start]
        return out


def _centred(x: Tensor, shift: Tensor, dtype: torch.dtype) -> Tensor:
    # Centre in the wider of the input and working dtypes, then cast: casting float64 input to float32
    # first would round away the digits that centring is meant to keep.
    wide = torch.promote_types(x.dtype, dtype)
    return (x.to(wide) - shift.to(wide)).to(dtype)


def _mean(x: Tensor, dtype: torch.dtype) -> Tensor:
    return x.to(torch.promote_types(x.dtype, dtype)).mean(dim=0, keepdim=True)


def _group_order(groups: Tensor, *keys: Tensor) -> Tensor:
    """Permutation sorting by ``groups``, then by each key in turn (ascending, stable)."""
    order = torch.arange(groups.numel(), device=groups.device)
    for key in reversed((groups, *keys)):
        order = order[torch.argsort(key[order], stable=True)]
    return order


def _group_starts(sorted_groups: Tensor, n_groups: int) -> Tensor:
    counts = torch.bincount(sorted_groups, minlength=n_groups)
    return torch.cumsum(counts, 0) - counts


def _rank_per_group(groups: Tensor, values: Tensor, rank: Tensor, n_groups: int) -> Tensor:
    """Per group g, the ``rank[g]``-th smallest (0-based) of the values in group g (NaN if none)."""
    order = _group_order(groups, values)
    counts = torch.bincount(groups, minlength=n_groups)
    valid = (rank >= 0) & (rank < counts)
    out = torch.full((n_groups,), float("nan"), dtype=values.dtype, device=values.device)
    out[valid] = values[order][(torch.cumsum(counts, 0) - counts + rank)[valid]]
    return out


def _exactly_zero_is_below_nothing(threshold: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    # Exact squared distances are never negative, so nothing lies strictly below a zero radius: no band
    # to re-check (duplicated rows, with their many zero distances, would otherwise fill it).
    never = torch.full_like(lo, float("-inf"))
    zero = threshold == 0
    return torch.where(zero, never, lo), torch.where(zero, never, hi)


def _below_bounds(threshold: Tensor, slack: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(lo, hi) in the working dtype around float64 ``threshold``: approximate values below lo are
    certainly below the threshold exactly, above hi certainly not; the cast's rounding is allowed for."""
    cast = 2 * float(torch.finfo(dtype).eps) * threshold.abs()
    lo, hi = (threshold - slack - cast).to(dtype), (threshold + slack + cast).to(dtype)
    return _exactly_zero_is_below_nothing(threshold, lo, hi)


def within_set_radii(
    x: Tensor,
    k: int,
    *,
    budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    dtype: torch.dtype | None = None,
) -> NeighbourRadii:
    """Exact k-th and 1st nearest-neighbour squared distances of each row of ``x`` to the other rows.

    The fast pass is symmetric: only the tiles on and above the diagonal are computed, each updating
    the candidate lists (the k + 1 + spare smallest, with indices) of its rows and, through its
    transpose, of its columns. Each exact value is then chosen from the row's band of candidates within
    the rounding bound of its k-th (or 1st) candidate.
    """
    dtype = dtype or x.dtype
    xc = _centred(x, _mean(x, dtype), dtype)
    return _within_set_radii(x, xc, _sq_norms(xc), k, budget_bytes)


def _within_set_radii(x: Tensor, xc: Tensor, sq: Tensor, k: int, budget_bytes: int) -> NeighbourRadii:
    """:func:`within_set_radii` on ``xc``, ``x`` centred in the working dtype, and its squared norms."""
    n, dim = x.shape
    if n < k + 1:
        raise TooFewSamplesError(
            f"{n} samples is too few for nearest_k={k}: need at least {k + 1}",
            details={"n": n, "nearest_k": k},
        )
    keep = min(n, k + 1 + _SPARE_CANDIDATES)
    best = torch.full((n, keep), float("inf"), dtype=xc.dtype, device=x.device)
    best_index = torch.zeros((n, keep), dtype=torch.int64, device=x.device)

    def merge(rows: slice, values: Tensor, index: Tensor) -> None:
        if best[rows, 0].isinf().all():  # the row's first tile: nothing to merge with
            best[rows, : values.shape[1]], best_index[rows, : values.shape[1]] = values, index
            return
        merged, slot = torch.topk(torch.cat([best[rows], values], dim=1), keep, dim=1, largest=False)
        best_index[rows] = torch.cat([best_index[rows], index], dim=1).gather(1, slot)
        best[rows] = merged

    tile = _tile_size(xc, budget_bytes, at_least=keep)
    buffers = _TileBuffers(min(n, tile), min(n, tile), xc.dtype, x.device, 2)
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        for j0 in range(i0, n, tile):
            j1 = min(n, j0 + tile)
            d = _block_sq_distances(
                xc[i0:i1], sq[i0:i1], xc[j0:j1], sq[j0:j1], out=buffers(0, i1 - i0, j1 - j0)
            )
            if i0 == j0:
                d.fill_diagonal_(0.0)  # a row's own entry: zero, as its exact distance is
            values, index = torch.topk(d, min(keep, j1 - j0), dim=1, largest=False)
            merge(slice(i0, i1), values, index + j0)
            if j0 != i0:
                transposed = buffers(1, j1 - j0, i1 - i0).copy_(d.T)
                values, index = torch.topk(transposed, min(keep, i1 - i0), dim=1, largest=False)
                merge(slice(j0, j1), values, index + i0)

    exact = ExactDistances(x, x)
    sq64 = sq.to(torch.float64)
    slack = rounding_bound(xc.dtype, dim, x.device) * (sq64 + sq64.max())  # for every pair of the row
    best64 = best.to(torch.float64)
    complete_list = keep == n
    ranks = (k,) if k == 1 else (k, 1)
    # The exact rank-th value E lies within ``slack`` of the rank-th candidate: candidates below ``lo``
    # are certainly smaller than E, above ``hi`` certainly larger, and E is the right one of the band
    # between, decided exactly. The list holds the whole band if its last entry lies above ``hi``.
    bands, complete = {}, {}
    for rank in ranks:
        around = best64[:, rank]
        lo, hi = around - 2 * slack, around + 2 * slack
        complete[rank] = torch.ones_like(around, dtype=torch.bool) if complete_list else best64[:, -1] > hi
        bands[rank] = (lo, hi, (best64 >= lo[:, None]) & (best64 <= hi[:, None]) & complete[rank][:, None])
    # One exact value per listed pair in either band (the two bands often share pairs).
    needed = bands[ranks[0]][2] if len(ranks) == 1 else bands[ranks[0]][2] | bands[ranks[1]][2]
    rows, slot = needed.nonzero(as_tuple=True)
    exact_listed = torch.full_like(best64, float("inf"))
    exact_listed[rows, slot] = exact(rows, best_index[rows, slot])

    def exact_rank(rank: int) -> Tensor:
        lo, hi, band = bands[rank]
        below = (best64 < lo[:, None]).sum(dim=1)
        # The band's exact values in order; E is the (rank - below)-th of them.
        in_band = torch.where(band, exact_listed, float("inf")).sort(dim=1).values
        out = in_band.gather(1, (rank - below).clamp(0, keep - 1)[:, None]).squeeze(1)
        missing = (~complete[rank]).nonzero().flatten()
        if missing.numel():
            # Ties fill the list. Its own exact rank-th value is an upper bound on E, and E itself if
            # nothing outside the list can be smaller (outside: at least last - slack, and >= 0).
            listed = exact(missing.repeat_interleave(keep), best_index[missing].flatten()).view(-1, keep)
            value = listed.sort(dim=1).values[:, rank]
            floor = (best64[missing, -1] - slack[missing]).clamp(min=0.0)
            settled = value <= floor
            out[missing[settled]] = value[settled]
            missing = missing[~settled]
        if missing.numel():
            out[missing] = _exact_rank_by_full_rows(
                xc, sq, missing, lo[missing], hi[missing], rank, exact, budget_bytes
            )
        return out

    kth_sq = exact_rank(k)
    nearest_sq = kth_sq if k == 1 else exact_rank(1)

    # Which other sample is at exactly the nearest distance: the first listed one (in the fast pass's
    # order), else the first of the whole row's band (rows whose list does not reach it).
    everyone = torch.arange(n, device=x.device)
    others = best_index != everyone[:, None]
    match = (exact_listed == nearest_sq[:, None]) & others
    nearest_index = best_index.gather(1, match.to(torch.uint8).argmax(dim=1, keepdim=True)).squeeze(1)
    rest = (~match.any(dim=1)).nonzero().flatten()
    if rest.numel():
        listed = exact(rest.repeat_interleave(keep), best_index[rest].flatten()).view(-1, keep)
        found = (listed == nearest_sq[rest, None]) & others[rest]
        nearest_index[rest] = (
            best_index[rest].gather(1, found.to(torch.uint8).argmax(1, keepdim=True)).squeeze(1)
        )
        rest = rest[~found.any(dim=1)]
    if rest.numel():
        lo, hi, _ = bands[1]
        nearest_index[rest] = _first_match_by_full_rows(
            xc, sq, rest, lo[rest], hi[rest], nearest_sq[rest], exact, budget_bytes
        )
    return NeighbourRadii(kth_sq=kth_sq, nearest_sq=nearest_sq, k=k, nearest_index=nearest_index)


def _exact_rank_by_full_rows(
    xc: Tensor,
    sq: Tensor,
    rows: Tensor,
    lo: Tensor,
    hi: Tensor,
    rank: int,
    exact: ExactDistances,
    budget_bytes: int,
) -> Tensor:
    """The exact rank-th value of ``rows`` from their whole rows' bands (heavily tied data)."""
    out = torch.empty(rows.numel(), dtype=torch.float64, device=xc.device)
    step = chunk_rows(xc.shape[0], 8, budget_bytes)
    for start in range(0, rows.numel(), step):
        chunk = rows[start : start + step]
        d = _block_sq_distances(xc[chunk], sq[chunk], xc, sq).to(torch.float64)
        d[torch.arange(chunk.numel(), device=xc.device), chunk] = 0.0
        c_lo, c_hi = lo[start : start + step, None], hi[start : start + step, None]
        below = (d < c_lo).sum(dim=1)
        band_rows, band_cols = ((d >= c_lo) & (d <= c_hi)).nonzero(as_tuple=True)
        del d
        values = exact(chunk[band_rows], band_cols)
        out[start : start + chunk.numel()] = _rank_per_group(band_rows, values, rank - below, chunk.numel())
    return out


def _first_match_by_full_rows(
    xc: Tensor,
    sq: Tensor,
    rows: Tensor,
    lo: Tensor,
    hi: Tensor,
    target: Tensor,
    exact: ExactDistances,
    budget_bytes: int,
) -> Tensor:
    """Per row, the lowest-index other row at exactly ``target`` (which lies in the band [lo, hi])."""
    out = torch.empty(rows.numel(), dtype=torch.int64, device=xc.device)
    step = chunk_rows(xc.shape[0], 8, budget_bytes)
    for start in range(0, rows.numel(), step):
        chunk = rows[start : start + step]
        d = _block_sq_distances(xc[chunk], sq[chunk], xc, sq).to(torch.float64)
        c_lo, c_hi = lo[start : start + step, None], hi[start : start + step, None]
        band_rows, band_cols = ((d >= c_lo) & (d <= c_hi)).nonzero(as_tuple=True)
        del d
        hit = (exact(chunk[band_rows], band_cols) == target[start + band_rows]) & (
            chunk[band_rows] != band_cols
        )
        first = torch.full((chunk.numel(),), xc.shape[0], dtype=torch.int64, device=xc.device)
        first.scatter_reduce_(0, band_rows[hit], band_cols[hit], reduce="amin")
        out[start : start + chunk.numel()] = first
    return out


class RowKeys:
    """Content keys of the rows of a sample set, made on first use: identical rows, identical keys.

    Two float64 projections on fixed random directions, each summed like the exact distances (one
    row's bits do not depend on its batch). Distinct rows share both keys only by a coincidence of
    two float64 sums, which the engine treats as impossible.
    """

    def __init__(self, x: Tensor) -> None:
        self.x = x
        self._keys: Tensor | None = None

    def keys(self) -> Tensor:
        if self._keys is None:
            dim = self.x.shape[1]
            gen = torch.Generator().manual_seed(0x6B6E6E)
            directions = torch.randn(2, dim, generator=gen, dtype=torch.float64).to(self.x.device)
            keys = []
            for start in range(0, self.x.shape[0], CPU_BLOCK_ROWS):
                rows = self.x[start : start + CPU_BLOCK_ROWS].to(torch.float64)
                keys.append(torch.stack([(rows * w).sum(dim=1) for w in directions], dim=1))
            self._keys = torch.cat(keys)
        return self._keys


class _NearestCandidates:
    """Pairs (owner, other) that may hold each owner's exact nearest neighbour.

    A pair is logged when its approximate distance is within the band (twice the slack) of the
    owner's running minimum; as the minimum falls, pairs beyond its band are dropped. An owner with
    more than ``_NEAREST_CANDIDATES`` in its band keeps one pair per distinct row of the other side
    (identical rows are at identical exact distances: a collapsed synthetic set is one candidate, not
    thousands), then at most that many, the closest by the fast pass, so memory stays O(owners).
    The nearest distance is exact whenever the distinct rows in an owner's band are at most that
    many, which is every case but a crowd of distinct neighbours within rounding of one distance
    (then it is the exact minimum over the closest of them: the true one to rounding).
    """

    def __init__(self, count: int, slack: Tensor, others: RowKeys) -> None:
        self.count, self.slack, self.others = count, slack, others
        self.parts: list[tuple[Tensor, Tensor, Tensor]] = []
        self.size = 0

    def add(self, owners: Tensor, others: Tensor, approx: Tensor, running_min: Tensor) -> None:
        self.parts.append((owners, others, approx.to(torch.float64)))
        self.size += int(owners.numel())
        if self.size > max(1 << 20, 4 * _NEAREST_CANDIDATES * self.count):
            self._prune(running_min)

    def _prune(self, running_min: Tensor) -> tuple[Tensor, Tensor]:
        if not self.parts:
            empty = self.slack.new_empty(0, dtype=torch.int64)
            return empty, empty
        owners, others, approx = (torch.cat(part) for part in zip(*self.parts, strict=True))
        keep = approx <= running_min.to(torch.float64)[owners] + 2 * self.slack[owners]
        owners, others, approx = owners[keep], others[keep], approx[keep]
        if bool((torch.bincount(owners, minlength=self.count) > _NEAREST_CANDIDATES).any()):
            # One pair per (owner, distinct other row): the lowest index of identical rows.
            keys = self.others.keys()[others]
            order = _group_order(owners, keys[:, 0], keys[:, 1], others)
            owners, others, approx, keys = owners[order], others[order], approx[order], keys[order]
            first = torch.ones_like(owners, dtype=torch.bool)
            first[1:] = (owners[1:] != owners[:-1]) | (keys[1:] != keys[:-1]).any(dim=1)
            owners, others, approx = owners[first], others[first], approx[first]
            order = _group_order(owners, approx)
            owners, others, approx = owners[order], others[order], approx[order]
            position = torch.arange(owners.numel(), device=owners.device)
            keep = position - _group_starts(owners, self.count)[owners] < _NEAREST_CANDIDATES
            owners, others, approx = owners[keep], others[keep], approx[keep]
        self.parts, self.size = [(owners, others, approx)], int(owners.numel())
        return owners, others

    def resolve(
        self,
        running_min: Tensor,
        exact: Callable[[Tensor, Tensor], Tensor],
        tie_break: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(exact nearest squared distance, its index) per owner. Among exactly equidistant
        neighbours the largest ``tie_break`` wins, then the lowest index: never the row order."""
        owners, others = self._prune(running_min)
        values = exact(owners, others)
        best = torch.full((self.count,), float("inf"), dtype=torch.float64, device=values.device)
        best.scatter_reduce_(0, owners, values, reduce="amin")
        tied = values == best[owners]
        owners, others = owners[tied], others[tied]
        score = -tie_break[others] if tie_break is not None else torch.zeros_like(values[tied])
        order = _group_order(owners, score, others)
        owners, others = owners[order], others[order]
        first = torch.ones_like(owners, dtype=torch.bool)
        first[1:] = owners[1:] != owners[:-1]
        index = torch.zeros(self.count, dtype=torch.int64, device=values.device)
        index[owners[first]] = others[first]
        return best, index


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
    ``dtype`` (default: the input's) is the fast pass's working precision; the graph is exact either
    way. The cross pass centres both sets on the real mean (distances are translation invariant, and
    smaller norms mean a smaller rounding bound); the real-real pass uses the same centred copy.
    """
    dtype = dtype or real.dtype
    synthetic_radii = within_set_radii(synthetic, k, budget_bytes=budget_bytes, dtype=dtype)
    shift = _mean(real, dtype)
    real_c = _centred(real, shift, dtype)
    r_sq = _sq_norms(real_c)
    if real_radii is None:
        real_radii = _within_set_radii(real, real_c, r_sq, k, budget_bytes)

    device = real.device
    n, m, dim = real.shape[0], synthetic.shape[0], real.shape[1]
    synthetic_c = _centred(synthetic, shift, dtype)
    s_sq = _sq_norms(synthetic_c)
    r_sq64, s_sq64 = r_sq.to(torch.float64), s_sq.to(torch.float64)
    tile = _tile_size(real_c, budget_bytes)
    tau = rounding_bound(dtype, dim, device)
    eps = float(torch.finfo(dtype).eps)
    real_kth_sq, synthetic_kth_sq = real_radii.kth_sq, synthetic_radii.kth_sq
    exact = ExactDistances(synthetic, real)

    ball_count = torch.zeros(m, dtype=torch.int64, device=device)
    real_covered = torch.zeros(n, dtype=torch.bool, device=device)
    in_synthetic_ball = torch.zeros(n, dtype=torch.bool, device=device)
    nearest_real_sq = torch.empty(m, dtype=torch.float64, device=device)
    nearest_real_index = torch.empty(m, dtype=torch.int64, device=device)
    col_min = torch.full((n,), float("inf"), dtype=dtype, device=device)
    col_slack = tau * (r_sq64 + s_sq64.max())
    col_near = _NearestCandidates(n, col_slack, RowKeys(synthetic))
    real_keys = RowKeys(real)

    # The tile's comparisons run as float arithmetic and min-reductions wherever they can: on a CPU a
    # comparison producing a bool tile costs several float passes, and a nonzero() scan more still.
    # Signs are exact: a - b < 0 exactly when a < b (IEEE subtraction, gradual underflow).
    buffers = _TileBuffers(min(m, tile), min(n, tile), dtype, device, 3)
    in_reach = torch.empty(min(m, tile) * min(n, tile), dtype=torch.bool, device=device)
    for start in range(0, m, tile):
        stop = min(m, start + tile)
        block, b_sq = synthetic_c[start:stop], s_sq[start:stop]
        b_sq_max = float(s_sq64[start:stop].max())
        b_kth = synthetic_kth_sq[start:stop]
        # Rows with a zero radius contain nothing (see _exactly_zero_is_below_nothing).
        b_kth_threshold = torch.where(b_kth == 0, float("-inf"), b_kth).to(dtype)
        row_min = torch.full((stop - start,), float("inf"), dtype=dtype, device=device)
        row_slack = tau * (s_sq64[start:stop] + r_sq64.max())
        row_near = _NearestCandidates(stop - start, row_slack, real_keys)
        for c0 in range(0, n, tile):
            c1 = min(n, c0 + tile)
            shape = (stop - start, c1 - c0)
            d = _block_sq_distances(block, b_sq, real_c[c0:c1], r_sq[c0:c1], out=buffers(0, *shape))

            # Real balls (precision, density, coverage): d < real kth^2, a threshold per column.
            lo, hi = _below_bounds(real_kth_sq[c0:c1], tau * (b_sq_max + r_sq64[c0:c1]), dtype)
            # d - lo < 0: surely inside; lo = -inf (a zero radius): +inf, never inside.
            from_lo = torch.sub(d, lo, out=buffers(1, *shape))
            work = torch.clamp(from_lo, max=0.0, out=buffers(2, *shape)).sign_()  # -1: surely inside
            ball_count[start:stop] -= work.sum(dim=1).to(torch.int64)
            # (d - lo)(d - hi) <= 0 in the band lo <= d <= hi (a false alarm only re-checks exactly).
            torch.sub(d, hi, out=work).mul_(from_lo)
            unsure = (work.amin(dim=1) <= 0).nonzero().flatten()
            if unsure.numel():
                sub = d[unsure]
                r_, c_ = ((sub >= lo) & (sub <= hi)).nonzero(as_tuple=True)
                rows, cols = start + unsure[r_], c0 + c_
                inside = exact(rows, cols) < real_kth_sq[cols]
                ball_count.index_add_(0, rows[inside], torch.ones_like(rows[inside]))
                real_covered[cols[inside]] = True
            tile_col_min = d.amin(dim=0)
            real_covered[c0:c1] |= tile_col_min < lo

            # Nearest real of each synthetic row, and nearest synthetic of each real column: the pairs
            # within reach of either running minimum, found in one scan of the tile.
            torch.minimum(row_min, d.amin(dim=1), out=row_min)
            torch.minimum(col_min[c0:c1], tile_col_min, out=col_min[c0:c1])
            row_reach = _reach(row_min, row_slack)
            col_reach = _reach(col_min[c0:c1], col_slack[c0:c1])
            reach = torch.maximum(row_reach[:, None], col_reach[None, :], out=buffers(1, *shape))
            mask = torch.le(d, reach, out=in_reach[: d.numel()].view(shape))
            r_, c_ = mask.nonzero(as_tuple=True)
            values = d[r_, c_]
            for_row, for_col = values <= row_reach[r_], values <= col_reach[c_]
            row_near.add(r_[for_row], c0 + c_[for_row], values[for_row], row_min)
            col_near.add(c0 + c_[for_col], start + r_[for_col], values[for_col], col_min)

            # Synthetic balls (recall): d < synthetic kth^2, a threshold per row, decided per column
            # on the minimum of d - kth^2 with one slack for the tile (d is not needed any more).
            slack = tau * (b_sq_max + float(r_sq64[c0:c1].max())) + 4 * eps * float(b_kth.max())
            z = d.sub_(b_kth_threshold[:, None])
            z_min = z.amin(dim=0)
            in_synthetic_ball[c0:c1] |= z_min < -slack
            unsure = ((z_min <= slack) & ~in_synthetic_ball[c0:c1]).nonzero().flatten()
            if unsure.numel():
                r_, c_ = (z.index_select(1, unsure).abs() <= slack).nonzero(as_tuple=True)
                rows, cols = start + r_, c0 + unsure[c_]
                inside = exact(rows, cols) < synthetic_kth_sq[rows]
                in_synthetic_ball[cols[inside]] = True

        def block_exact(rows: Tensor, cols: Tensor, offset: int = start) -> Tensor:
            return exact(rows + offset, cols)

        nearest_real_sq[start:stop], nearest_real_index[start:stop] = row_near.resolve(
            row_min, block_exact, real_radii.nearest_sq
        )

    real_nearest_sq, _ = col_near.resolve(col_min, lambda cols, rows: exact(rows, cols))
    return KnnGraph(
        k=k,
        real=real_radii,
        synthetic=synthetic_radii,
        synthetic_real_ball_count=ball_count,
        synthetic_nearest_real_sq=nearest_real_sq,
        synthetic_nearest_real_index=nearest_real_index,
        real_in_synthetic_ball=in_synthetic_ball,
        real_ball_covered=real_covered,
        real_nearest_synthetic_sq=real_nearest_sq,
    )


def _reach(running_min: Tensor, slack: Tensor) -> Tensor:
    """The running minimum plus its band, rounded up in the working dtype."""
    reach = (running_min.to(torch.float64) + 2 * slack).to(running_min.dtype)
    return torch.nextafter(reach, torch.full_like(reach, float("inf")))
