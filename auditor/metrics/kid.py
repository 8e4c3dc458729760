"""Kernel Inception Distance (Binkowski et al. 2018): the ``kid`` metric.

Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets
(drawn without replacement from each side, as torch-fidelity and clean-fid do). Value = mean over
subsets; ``std`` = the population standard deviation of the per-subset estimates.

Subsets are drawn independently of the rows' order: each side is first put in canonical order (rows
sorted by their bytes, :mod:`auditor.metrics.canonical`), then subset ``i`` takes, on each side, the
first ``m`` positions of a seeded ``randperm`` in that order (real, then synthetic, subset after subset,
from the one generator). Permuting either side's rows therefore changes no subset and no value.

How it is computed (the value is the same per-subset definition either way, to floating rounding):

- subsets that cover both sets (``m`` = both sizes) are all the sets themselves, so the MMD^2 is
  computed once and nothing is drawn; ``std`` is then 0;
- otherwise either the kernel matrices on the union of the rows the subsets use are computed once, tile
  by tile, and every subset's sums read off them with indicator products (cheap when subsets overlap
  heavily, as half-size or nearly whole-set subsets do), or the subsets' own kernel matrices are
  computed in batches (``bmm``), whichever costs fewer operations. Both stay within ``budget_bytes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from auditor.metrics.canonical import canonical_rows

DEFAULT_SUBSET_SIZE = 1000
DEFAULT_SUBSETS = 100
DEFAULT_BUDGET_BYTES = 128 << 20
# Rough cost, in multiply-adds per kernel entry, of turning a product into a kernel value (float64
# conversion, scale, shift, cube) and summing it: memory-bound work, weighed against the 2d of the product.
_ELEMENTWISE_COST = 16
# Bytes per kernel-matrix entry alive at once: the product in the features' dtype (at most 8) and its
# float64 kernel value.
_BYTES_PER_ENTRY = 16


@dataclass(frozen=True)
class KidEstimate:
    mean: Tensor
    std: Tensor
    subset_values: Tensor  # (subsets,)
    subset_size: int


def _kernel(a: Tensor, b: Tensor) -> Tensor:
    """(a b^T / d + 1)^3: products in the features' dtype (as the references do), kernel in float64."""
    k = torch.matmul(a, b.transpose(-1, -2)).double()
    return k.div_(a.shape[-1]).add_(1).pow_(3)


def polynomial_mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 of two equal-size samples under the cubic polynomial kernel."""
    m = x.shape[0]
    # Kernel values and sums in float64, because MMD^2 is a small difference of large sums.
    k_xx, k_yy, k_xy = _kernel(x, x), _kernel(y, y), _kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.sum() / (m * m)


def _mmd2_from_sums(xx: Tensor, yy: Tensor, xy: Tensor, m: int) -> Tensor:
    """The unbiased estimator from off-diagonal within-set sums and the cross sum (all float64)."""
    return (xx + yy) / (m * (m - 1)) - 2 * xy / (m * m)


def _tile_rows(budget_bytes: int, weight_rows: int) -> int:
    """Rows (and columns) of a square kernel tile whose temporaries stay within the budget: t^2 kernel
    entries plus two (weight_rows x t) float64 products."""
    per_entry, per_column = _BYTES_PER_ENTRY, 2 * 8 * weight_rows
    # the positive root of per_entry t^2 + per_column t = budget
    root = (math.sqrt(per_column**2 + 4 * per_entry * budget_bytes) - per_column) / (2 * per_entry)
    return max(1, int(root))


def _kernel_sums(
    a: Tensor,
    wa: Tensor | None,
    b: Tensor | None = None,
    wb: Tensor | None = None,
    *,
    budget_bytes: int,
) -> tuple[Tensor, Tensor]:
    """Per weight row s: ``sum_pq wa[s,p] k(a_p, b_q) wb[s,q]`` and, when ``b`` is None (b = a,
    wb = wa), the diagonal part ``sum_p wa[s,p]^2 k(a_p, a_p)`` (zeros otherwise). None weights are
    a single row of ones.

    Kernel tiles within ``budget_bytes`` are computed once and reduced on the fly; the symmetric case
    computes only the tiles on and above the diagonal.
    """
    symmetric = b is None
    other, w_other = (a, wa) if b is None else (b, wb)
    rows = wa.shape[0] if wa is not None else 1
    t = _tile_rows(budget_bytes, rows)
    total = torch.zeros(rows, dtype=torch.float64, device=a.device)
    diagonal = torch.zeros(rows, dtype=torch.float64, device=a.device)
    for i in range(0, a.shape[0], t):
        block, w_block = a[i : i + t], (wa[:, i : i + t] if wa is not None else None)
        for j in range(i if symmetric else 0, other.shape[0], t):
            k = _kernel(block, other[j : j + t])
            if w_block is None or w_other is None:
                tile = k.sum().reshape(1)
            else:
                tile = ((w_block @ k) * w_other[:, j : j + t]).sum(1)
            total += 2 * tile if symmetric and j != i else tile
            if symmetric and j == i:
                diag = k.diagonal()
                diagonal += diag.sum().reshape(1) if w_block is None else (w_block * w_block) @ diag
    return total, diagonal


def _full_set_mmd2(x: Tensor, y: Tensor, budget_bytes: int) -> Tensor:
    """The unbiased MMD^2 of two equal-size sets, tiled (no m x m matrix beyond the budget)."""
    m = x.shape[0]
    xx, xx_diag = _kernel_sums(x, None, budget_bytes=budget_bytes)
    yy, yy_diag = _kernel_sums(y, None, budget_bytes=budget_bytes)
    xy, _ = _kernel_sums(x, None, y, None, budget_bytes=budget_bytes)
    return _mmd2_from_sums(xx - xx_diag, yy - yy_diag, xy, m)[0]


def _used_rows(idx: Tensor, n: int) -> Tensor:
    """The rows (of ``n``) that the subsets ``idx`` (subsets x m) use, ascending: canonical order."""
    return torch.bincount(idx.reshape(-1), minlength=n).nonzero().squeeze(1)


def _indicators(idx: Tensor, used: Tensor, n: int) -> Tensor:
    """Each subset's 0/1 row on ``used``, the sorted union of the rows ``idx`` (subsets x m) uses."""
    position = torch.full((n,), -1, dtype=torch.int64)
    position[used] = torch.arange(used.shape[0])
    weights = torch.zeros(idx.shape[0], used.shape[0], dtype=torch.float64)
    return weights.scatter_(1, position[idx], 1.0)


def _subset_mmd2_union(
    real: Tensor, synthetic: Tensor, real_idx: Tensor, synth_idx: Tensor, budget_bytes: int
) -> Tensor:
    """Every subset's MMD^2 from the kernel matrices on the union of the rows the subsets use."""
    m = real_idx.shape[1]
    used_r, used_s = _used_rows(real_idx, real.shape[0]), _used_rows(synth_idx, synthetic.shape[0])
    w_r = _indicators(real_idx, used_r, real.shape[0]).to(real.device)
    w_s = _indicators(synth_idx, used_s, synthetic.shape[0]).to(synthetic.device)
    x, y = real[used_r.to(real.device)], synthetic[used_s.to(synthetic.device)]
    xx, xx_diag = _kernel_sums(x, w_r, budget_bytes=budget_bytes)
    yy, yy_diag = _kernel_sums(y, w_s, budget_bytes=budget_bytes)
    xy, _ = _kernel_sums(x, w_r, y, w_s, budget_bytes=budget_bytes)
    return _mmd2_from_sums(xx - xx_diag, yy - yy_diag, xy, m).cpu()


def _subset_mmd2_batched(
    real: Tensor, synthetic: Tensor, real_idx: Tensor, synth_idx: Tensor, budget_bytes: int
) -> Tensor:
    """Every subset's MMD^2 from its own kernel matrices, ``bmm`` over batches of subsets."""
    subsets, m = real_idx.shape
    per_subset = m * m * _BYTES_PER_ENTRY + 2 * m * real.shape[1] * real.element_size()
    batch = max(1, budget_bytes // per_subset)
    values = torch.empty(subsets, dtype=torch.float64)
    for start in range(0, subsets, batch):
        x = real[real_idx[start : start + batch].to(real.device)]  # (b, m, d)
        y = synthetic[synth_idx[start : start + batch].to(synthetic.device)]
        k_xx, k_yy, k_xy = _kernel(x, x), _kernel(y, y), _kernel(x, y)
        xx = k_xx.sum((1, 2)) - k_xx.diagonal(dim1=1, dim2=2).sum(1)
        yy = k_yy.sum((1, 2)) - k_yy.diagonal(dim1=1, dim2=2).sum(1)
        values[start : start + batch] = _mmd2_from_sums(xx, yy, k_xy.sum((1, 2)), m).cpu()
    return values


def _union_is_cheaper(
    real_idx: Tensor, synth_idx: Tensor, n_real: int, n_synth: int, d: int, budget_bytes: int
) -> bool:
    """Whether the union path costs fewer operations (and its indicator rows fit the budget)."""
    subsets, m = real_idx.shape
    n_r, n_s = _used_rows(real_idx, n_real).numel(), _used_rows(synth_idx, n_synth).numel()
    if subsets * (n_r + n_s) * 8 > budget_bytes // 2:
        return False
    per_entry = 2 * d + _ELEMENTWISE_COST
    batched = subsets * 3 * m * m * per_entry
    # The symmetric matrices need their upper half; each entry also costs 2 x subsets for the
    # indicator product and subsets for the weighted row sum.
    union = (n_r * n_r / 2 + n_s * n_s / 2 + n_r * n_s) * (per_entry + 3 * subsets)
    return union < batched


def kernel_inception_distance(
    real: Tensor,
    synthetic: Tensor,
    *,
    subset_size: int = DEFAULT_SUBSET_SIZE,
    subsets: int = DEFAULT_SUBSETS,
    generator: torch.Generator,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> KidEstimate:
    """KID over ``subsets`` random subsets of ``min(subset_size, n_real, n_synthetic)`` samples."""
    n_r, n_s = real.shape[0], synthetic.shape[0]
    m = min(subset_size, n_r, n_s)
    real, synthetic = canonical_rows(real), canonical_rows(synthetic)
    if m == n_r == n_s:
        # Every subset drawn without replacement is the whole set: one MMD^2 is every subset's value.
        value = _full_set_mmd2(real, synthetic, budget_bytes).cpu()
        return KidEstimate(
            mean=value,
            std=torch.zeros((), dtype=torch.float64),
            subset_values=value.repeat(subsets),
            subset_size=m,
        )
    real_idx = torch.empty(subsets, m, dtype=torch.int64)
    synth_idx = torch.empty(subsets, m, dtype=torch.int64)
    for i in range(subsets):
        real_idx[i] = torch.randperm(n_r, generator=generator)[:m]
        synth_idx[i] = torch.randperm(n_s, generator=generator)[:m]
    if _union_is_cheaper(real_idx, synth_idx, n_r, n_s, real.shape[1], budget_bytes):
        values = _subset_mmd2_union(real, synthetic, real_idx, synth_idx, budget_bytes)
    else:
        values = _subset_mmd2_batched(real, synthetic, real_idx, synth_idx, budget_bytes)
    return KidEstimate(
        mean=values.mean(), std=values.std(unbiased=False), subset_values=values, subset_size=m
    )
