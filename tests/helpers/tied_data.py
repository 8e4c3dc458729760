"""Tie-heavy sample sets (the data real audits are full of) and a brute-force exact k-NN reference.

Every scenario returns float64 (real, synthetic) tensors whose pairwise distances tie: exact copies,
duplicated rows on either side, integer lattices, quantised features, one-hot tables, tiny N and
N < d. The reference computes every quantity of a ``KnnGraph`` from the full float64 matrices of
squared direct differences (NumPy), with no tiling, no bounds and no candidate lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

Scenario = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _one_hot(codes: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    blocks = [np.eye(size)[codes[:, j]] for j, size in enumerate(sizes)]
    return np.concatenate(blocks, axis=1)


def exact_copies(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    real = rng.standard_normal((300, 12))
    return real, real.copy()


def copies_of_a_subset_with_fresh_rows(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    real = rng.standard_normal((260, 8))
    synthetic = np.concatenate([real[rng.integers(0, 260, 150)], rng.standard_normal((110, 8))])
    return real, synthetic


def duplicated_real_rows(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    base = rng.standard_normal((60, 6))
    real = base[rng.integers(0, 60, 240)]  # every real row has copies
    return real, rng.standard_normal((200, 6))


def duplicated_synthetic_rows(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    real = rng.standard_normal((240, 6))
    synthetic = rng.standard_normal((25, 6))[rng.integers(0, 25, 230)]  # mode collapse onto 25 points
    return real, synthetic


def fully_collapsed_synthetic(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    real = rng.standard_normal((150, 5))
    return real, np.repeat(real[:1], 120, axis=0)


def integer_lattice_shifted_by_one(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    axes = np.meshgrid(*[np.arange(6)] * 3, indexing="ij")
    lattice = np.stack(axes, axis=-1).reshape(-1, 3).astype(np.float64)
    return lattice, lattice + 1.0


def integer_lattice_with_offset(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A lattice far from the origin: centring must not break its ties."""
    axes = np.meshgrid(*[np.arange(5)] * 4, indexing="ij")
    lattice = np.stack(axes, axis=-1).reshape(-1, 4).astype(np.float64) + 1000.0
    return lattice, lattice[rng.permutation(len(lattice))[:400]] + np.array([0.0, 1.0, 0.0, 0.0])


def quantised_features(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    real = np.round(rng.standard_normal((400, 8)) * 2) / 2
    synthetic = np.round((0.2 + rng.standard_normal((380, 8))) * 2) / 2
    return real, synthetic


def uint8_pixels(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Coarse 'images': 64 pixels with 4 grey levels, so many images share distances."""
    real = rng.integers(0, 4, (300, 64)).astype(np.float64) * 85.0
    synthetic = np.concatenate([real[:100], rng.integers(0, 4, (200, 64)).astype(np.float64) * 85.0])
    return real, synthetic


def one_hot_table(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """600 x 13 one-hot rows (categorical columns of 5, 4, 2 and 2 levels): few distinct rows."""
    sizes = (5, 4, 2, 2)

    def table(n: int, skew: float) -> np.ndarray:
        codes = np.stack([rng.choice(s, n, p=_skewed(s, skew)) for s in sizes], axis=1)
        return _one_hot(codes, sizes)

    return table(600, 1.0), table(600, 2.0)


def sparse_one_hot_table(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Many levels: most rows are distinct, and distances take only a few values (0, 2, 4, ...)."""
    sizes = (12, 10, 8)
    codes_r = np.stack([rng.integers(0, s, 300) for s in sizes], axis=1)
    codes_s = np.stack([rng.integers(0, s, 280) for s in sizes], axis=1)
    return _one_hot(codes_r, sizes), _one_hot(codes_s, sizes)


def tiny_sets(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    real = rng.integers(0, 3, (12, 2)).astype(np.float64)
    return real, rng.integers(0, 3, (11, 2)).astype(np.float64)


def fewer_samples_than_dimensions(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    real = rng.standard_normal((24, 80))
    return real, np.concatenate([real[:8], rng.standard_normal((16, 80))])


def _skewed(size: int, power: float) -> np.ndarray:
    weights = np.arange(1, size + 1, dtype=np.float64) ** -power
    return weights / weights.sum()


SCENARIOS: dict[str, Scenario] = {
    "exact_copies": exact_copies,
    "copies_of_a_subset_with_fresh_rows": copies_of_a_subset_with_fresh_rows,
    "duplicated_real_rows": duplicated_real_rows,
    "duplicated_synthetic_rows": duplicated_synthetic_rows,
    "fully_collapsed_synthetic": fully_collapsed_synthetic,
    "integer_lattice_shifted_by_one": integer_lattice_shifted_by_one,
    "integer_lattice_with_offset": integer_lattice_with_offset,
    "quantised_features": quantised_features,
    "uint8_pixels": uint8_pixels,
    "one_hot_table": one_hot_table,
    "sparse_one_hot_table": sparse_one_hot_table,
    "tiny_sets": tiny_sets,
    "fewer_samples_than_dimensions": fewer_samples_than_dimensions,
}


def scenario(name: str, seed: int = 0) -> tuple[Tensor, Tensor]:
    real, synthetic = SCENARIOS[name](np.random.default_rng(seed))
    return torch.from_numpy(real), torch.from_numpy(synthetic)


@dataclass(frozen=True)
class ReferenceGraph:
    """The k-NN quantities from full matrices of exact squared distances."""

    real_kth_sq: np.ndarray
    real_nearest_sq: np.ndarray
    synthetic_kth_sq: np.ndarray
    synthetic_nearest_sq: np.ndarray
    synthetic_real_ball_count: np.ndarray
    synthetic_nearest_real_sq: np.ndarray
    synthetic_nearest_real_candidates: list[frozenset[int]]  # the acceptable nearest-real indices
    real_in_synthetic_ball: np.ndarray
    real_ball_covered: np.ndarray
    real_nearest_synthetic_sq: np.ndarray


def squared_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)


def reference_graph(real: Tensor, synthetic: Tensor, k: int) -> ReferenceGraph:
    r, s = real.double().numpy(), synthetic.double().numpy()
    rr, ss, sr = squared_differences(r, r), squared_differences(s, s), squared_differences(s, r)
    # Sorted rows include the sample itself (distance 0) first: the k-th other is column k.
    rr_sorted, ss_sorted = np.sort(rr, axis=1), np.sort(ss, axis=1)
    real_kth, synthetic_kth = rr_sorted[:, k], ss_sorted[:, k]
    nearest_real = sr.min(axis=1)
    # Among equidistant nearest reals, those with the largest own nearest-real gap are acceptable.
    acceptable = []
    for row in range(len(s)):
        tied = np.flatnonzero(sr[row] == nearest_real[row])
        gaps = rr_sorted[tied, 1]
        acceptable.append(frozenset(tied[gaps == gaps.max()].tolist()))
    return ReferenceGraph(
        real_kth_sq=real_kth,
        real_nearest_sq=rr_sorted[:, 1],
        synthetic_kth_sq=synthetic_kth,
        synthetic_nearest_sq=ss_sorted[:, 1],
        synthetic_real_ball_count=(sr < real_kth[None, :]).sum(axis=1),
        synthetic_nearest_real_sq=nearest_real,
        synthetic_nearest_real_candidates=acceptable,
        real_in_synthetic_ball=(sr < synthetic_kth[:, None]).any(axis=0),
        real_ball_covered=(sr < real_kth[None, :]).any(axis=0),
        real_nearest_synthetic_sq=sr.min(axis=0),
    )
