"""Canonical row order: seeded draws and sums that do not depend on the order of a set's rows.

The rule: a set's rows are sorted ascending by their raw bytes, each row's C-contiguous, native-endian
in-memory representation in its own dtype compared as unsigned bytes (``memcmp`` order). The order is a
function of the set's content only, so

- permuting a set's rows gives the same sorted tensor, bit for bit;
- rows with identical bytes are interchangeable (any order among duplicates gives the same sorted
  tensor), so duplicated rows cannot make the order ambiguous;
- a seeded draw of *positions in this order* (a KID subset, a subsample to a smaller N, a bootstrap
  resample, a k-means++ seed) picks the same rows whatever the input order, and a computation on the
  sorted tensor adds the same numbers in the same order, so its result is identical, not just close.

It is not a numeric order (bytes are compared little-end first on most machines, and ``-0.0`` sorts
apart from ``0.0``); it only has to be total and content-determined. Sorting costs O(n log n) short
``memcmp`` calls on the host plus one gather (a copy of the set).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def canonical_order(x: Tensor) -> Tensor:
    """Indices (on ``x``'s device) that put the rows of the 2-D ``x`` in canonical (byte) order."""
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D tensor (rows x columns), got shape {tuple(x.shape)}")
    n = x.shape[0]
    if n <= 1 or x.shape[1] == 0:
        return torch.arange(n, device=x.device)
    raw = x.detach().cpu().contiguous().view(torch.uint8).reshape(n, -1).numpy()
    keys = raw.view(np.dtype((np.void, raw.shape[1]))).ravel()
    # NumPy orders unstructured void items by memcmp; stable, although the order among identical rows
    # cannot matter.
    order = np.argsort(keys, kind="stable")
    return torch.from_numpy(order).to(x.device)


def canonical_rows(x: Tensor) -> Tensor:
    """The rows of ``x`` in canonical order (a copy; ``x`` itself is not changed)."""
    return x[canonical_order(x)]
