"""Seeded, machine-independent choice of samples (``max_samples``) and of files to hash (fingerprints).

NumPy's generators promise no stream stability across versions, so the choice is made from SHA-256
alone: every key gets the rank ``sha256(f"{seed}\\0{key}")`` and the ``k`` lowest ranks win. The same keys
and seed pick the same samples on every machine and every library version, and adding samples to a
dataset only ever displaces chosen ones by new, lower-ranked keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def seeded_rank(key: str, seed: int | str) -> bytes:
    """The sort rank of ``key`` under ``seed`` (a seeded permutation of all possible keys)."""
    return hashlib.sha256(f"{seed}\0{key}".encode()).digest()


def choose_indices(keys: Sequence[str], k: int | None, seed: int | str) -> list[int]:
    """Indices of ``k`` keys chosen by seeded rank, in ascending index order (all indices when k is None
    or not smaller than the number of keys)."""
    if k is None or k >= len(keys):
        return list(range(len(keys)))
    ranked = sorted(range(len(keys)), key=lambda i: seeded_rank(keys[i], seed))
    return sorted(ranked[:k])
