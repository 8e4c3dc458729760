"""Frechet distance between Gaussian fits (Heusel et al. 2017): the ``fid`` metric.

    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1) + Tr(S_2) - 2 Tr((S_1^1/2 S_2 S_1^1/2)^1/2)

The trace term uses the symmetric product S_1^1/2 S_2 S_1^1/2, whose eigenvalues equal those of S_1 S_2,
so both square roots come from ``eigh`` of symmetric PSD matrices: real by construction, and defined
for singular or rank-deficient covariances (N < d), where ``sqrtm`` of the non-symmetric product
goes complex or NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from auditor.metrics.gaussian import GaussianStats


def sqrtm_psd(matrix: Tensor) -> Tensor:
    """Principal square root of a symmetric PSD matrix; tiny negative eigenvalues are rounding."""
    eigvals, eigvecs = torch.linalg.eigh(matrix)
    return (eigvecs * eigvals.clamp(min=0).sqrt()) @ eigvecs.T


def trace_sqrt_product(cov_a: Tensor, cov_b: Tensor) -> Tensor:
    """Tr((A B)^1/2) for symmetric PSD A and B.

    Fast path: with A = L L^T (Cholesky), A B is similar to L^T B L, a symmetric PSD matrix, so the trace
    is the sum of square roots of its eigenvalues: one Cholesky, two triangular-sized products and one
    ``eigvalsh``. A singular A (N < d, collinear features) has no Cholesky factor; then A^1/2 comes from
    ``eigh`` instead, which handles any PSD matrix.
    """
    factor, info = torch.linalg.cholesky_ex(cov_a)
    if int(info) == 0 and bool(torch.isfinite(factor).all()):
        product = factor.T @ cov_b @ factor
    else:
        root = sqrtm_psd(cov_a)
        product = root @ cov_b @ root
    product = (product + product.T) / 2
    return torch.linalg.eigvalsh(product).clamp(min=0).sqrt().sum()


def _trace_sqrt_product_eigh(cov_a: Tensor, cov_b: Tensor) -> Tensor:
    """The general path alone (kept for tests comparing both paths)."""
    root_a = sqrtm_psd(cov_a)
    product = root_a @ cov_b @ root_a
    product = (product + product.T) / 2
    return torch.linalg.eigvalsh(product).clamp(min=0).sqrt().sum()


def frechet_distance(a: GaussianStats, b: GaussianStats) -> Tensor:
    diff = a.mean - b.mean
    value = diff @ diff + torch.trace(a.cov) + torch.trace(b.cov) - 2 * trace_sqrt_product(a.cov, b.cov)
    # The true value is >= 0; rounding can leave -1e-12 for identical inputs.
    return value.clamp(min=0)
