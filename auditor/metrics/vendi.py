"""Vendi score (Friedman & Dieng 2022) with the cosine kernel: the ``vendi`` metric.

Vendi = exp(entropy of the eigenvalues of K / n), K the n x n cosine-similarity matrix. For the cosine
(linear on unit vectors) kernel, K / n = X X^T / n shares its non-zero eigenvalues with X^T X / n, so the
score is computed on whichever side is smaller, min(n, d): O(n d min(n, d)) time, never an n x n matrix
when n > d.
"""

from __future__ import annotations

import torch
from torch import Tensor

from auditor.metrics.spectrum import entropy_of


def _unit_rows(x: Tensor) -> Tensor:
    x = x.to(torch.float64)
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)


def vendi_score(x: Tensor, weights: Tensor | None = None) -> Tensor:
    """Vendi score of the rows of ``x``; ``weights`` (non-negative) gives a weighted sample."""
    unit = _unit_rows(x)
    n, d = unit.shape
    w = torch.full((n,), 1.0 / n, dtype=unit.dtype, device=unit.device) if weights is None else weights
    w = w.to(unit.dtype)
    w = w / w.sum()
    if n <= d:
        scaled = unit * w.sqrt()[:, None]
        eigvals = torch.linalg.eigvalsh(scaled @ scaled.T)
    else:
        eigvals = torch.linalg.eigvalsh((unit * w[:, None]).T @ unit)
    return entropy_of(eigvals.clamp(min=0)).exp()


def vendi_ratio(synthetic: Tensor, real_subsample: Tensor) -> Tensor:
    return vendi_score(synthetic) / vendi_score(real_subsample)
