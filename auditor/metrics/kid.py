"""Kernel Inception Distance (Binkowski et al. 2018): the ``kid`` metric.

Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets
(drawn without replacement from each side, as torch-fidelity and clean-fid do). Value = mean over
subsets; ``std`` = the population standard deviation of the per-subset estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_SUBSET_SIZE = 1000
DEFAULT_SUBSETS = 100


@dataclass(frozen=True)
class KidEstimate:
    mean: Tensor
    std: Tensor
    subset_values: Tensor  # (subsets,)
    subset_size: int


def polynomial_mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 of two equal-size samples under the cubic polynomial kernel."""
    m, d = x.shape
    # Products in the features' dtype (as the references do); kernel values and sums in float64,
    # because MMD^2 is a small difference of large sums.
    k_xx = (torch.mm(x, x.T).double() / d + 1) ** 3
    k_yy = (torch.mm(y, y.T).double() / d + 1) ** 3
    k_xy = (torch.mm(x, y.T).double() / d + 1) ** 3
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.sum() / (m * m)


def kernel_inception_distance(
    real: Tensor,
    synthetic: Tensor,
    *,
    subset_size: int = DEFAULT_SUBSET_SIZE,
    subsets: int = DEFAULT_SUBSETS,
    generator: torch.Generator,
) -> KidEstimate:
    """KID over ``subsets`` random subsets of ``min(subset_size, n_real, n_synthetic)`` samples."""
    m = min(subset_size, real.shape[0], synthetic.shape[0])
    values = torch.empty(subsets, dtype=torch.float64)
    for i in range(subsets):
        real_idx = torch.randperm(real.shape[0], generator=generator)[:m].to(real.device)
        synth_idx = torch.randperm(synthetic.shape[0], generator=generator)[:m].to(synthetic.device)
        values[i] = polynomial_mmd2_unbiased(real[real_idx], synthetic[synth_idx]).cpu()
    return KidEstimate(
        mean=values.mean(), std=values.std(unbiased=False), subset_values=values, subset_size=m
    )
