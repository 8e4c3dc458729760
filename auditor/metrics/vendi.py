"""Vendi score (Friedman & Dieng 2022) with the cosine kernel: the ``vendi`` metric.

Vendi = exp(entropy of the eigenvalues of K / n), K the n x n cosine-similarity matrix. For the cosine
(linear on unit vectors) kernel, K / n = X X^T / n shares its non-zero eigenvalues with X^T X / n, so the
score is computed on whichever side is smaller, min(n, d): O(n d min(n, d)) time, never an n x n matrix
when n > d.

``vendi_ratio`` compares with the real set at the synthetic set's N (Vendi grows with N): the scoring
stage subsamples the real set with a seeded ``randperm`` over its rows in canonical order (sorted by
their bytes, :mod:`auditor.metrics.canonical`), so the subsample, like the score itself, does not depend
on the order of the rows. :func:`vendi_scores` scores many weightings of one set at once (the bootstrap).
"""

from __future__ import annotations

import torch
from torch import Tensor

from auditor.metrics.spectrum import entropy_of

DEFAULT_BUDGET_BYTES = 128 << 20


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


def vendi_scores(x: Tensor, weights: Tensor, *, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> Tensor:
    """``vendi_score(x, weights[b])`` for every row b of ``weights`` (B x n), batched.

    With n <= d the n x n cosine kernel is computed once and only rescaled per weighting; with n > d each
    weighting's d x d matrix is one batched product. Batches of weightings stay within ``budget_bytes``.
    """
    unit = _unit_rows(x)
    n, d = unit.shape
    w = weights.to(device=unit.device, dtype=unit.dtype)
    w = w / w.sum(1, keepdim=True)
    side = min(n, d)
    per_weighting = 8 * (2 * side * side + (0 if n <= d else n * d))
    batch = max(1, budget_bytes // per_weighting)
    kernel = unit @ unit.T if n <= d else None
    scores = []
    for start in range(0, w.shape[0], batch):
        wb = w[start : start + batch]
        if kernel is not None:
            root = wb.sqrt()
            matrices = root[:, :, None] * kernel[None] * root[:, None, :]
        else:
            matrices = (unit[None] * wb[:, :, None]).transpose(1, 2) @ unit
        p = torch.linalg.eigvalsh(matrices).clamp(min=0)
        entropy = -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(-1)
        scores.append(entropy.exp())
    return torch.cat(scores) if scores else torch.empty(0, dtype=torch.float64, device=unit.device)


def vendi_ratio(synthetic: Tensor, real_subsample: Tensor) -> Tensor:
    """Vendi of the synthetic set over Vendi of a real subsample of the same size."""
    return vendi_score(synthetic) / vendi_score(real_subsample)
