"""Collapse scenarios: a well-separated Gaussian mixture as the "real" distribution, and synthetic sets
that fail it in one documented way each (dropped modes, shrunken modes, truncated tails, copies,
duplicates, recursive training on its own output).

Everything is float64 and driven by an explicit ``torch.Generator``, so a seed fixes a scenario.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from helpers.gaussians import random_orthogonal

DEFAULT_MODES = 8
DEFAULT_DIM = 24
# Mode centres sit on orthogonal axes at this distance from the origin (pairwise sqrt(2) times it),
# with unit-variance isotropic modes: a mode's samples lie ~sqrt(d) from its centre, so 14 keeps every
# pair of modes apart by far more than their radii at d = 16-32.
DEFAULT_SEPARATION = 14.0


@dataclass(frozen=True)
class Mixture:
    """A Gaussian mixture with per-mode means, covariances and weights."""

    means: Tensor  # (K, d)
    covs: Tensor  # (K, d, d)
    weights: Tensor  # (K,), sums to one

    @property
    def num_modes(self) -> int:
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def sample_labelled(
        self, n: int, gen: torch.Generator, *, modes: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``n`` samples and their mode labels; ``modes`` restricts (and renormalises) the mixture."""
        weights = self.weights.clone()
        if modes is not None:
            keep = torch.zeros_like(weights, dtype=torch.bool)
            keep[modes] = True
            weights = torch.where(keep, weights, torch.zeros_like(weights))
        labels = torch.multinomial(weights / weights.sum(), n, replacement=True, generator=gen)
        eigvals, eigvecs = torch.linalg.eigh(self.covs)
        roots = eigvecs * eigvals.clamp(min=0).sqrt()[:, None, :]  # (K, d, d): root @ root.T = cov
        z = torch.randn(n, self.dim, generator=gen, dtype=torch.float64)
        x = self.means[labels] + torch.einsum("nij,nj->ni", roots[labels], z)
        return x, labels

    def sample(self, n: int, gen: torch.Generator, *, modes: Tensor | None = None) -> Tensor:
        return self.sample_labelled(n, gen, modes=modes)[0]


def well_separated_mixture(
    gen: torch.Generator,
    *,
    num_modes: int = DEFAULT_MODES,
    dim: int = DEFAULT_DIM,
    separation: float = DEFAULT_SEPARATION,
) -> Mixture:
    """Equal-weight, unit-variance isotropic modes centred on ``num_modes`` orthogonal directions."""
    if num_modes > dim:
        raise ValueError("orthogonal mode centres need num_modes <= dim")
    directions = random_orthogonal(dim, gen)[:num_modes]
    eye = torch.eye(dim, dtype=torch.float64)
    return Mixture(
        means=separation * directions,
        covs=eye.expand(num_modes, dim, dim).clone(),
        weights=torch.full((num_modes,), 1.0 / num_modes, dtype=torch.float64),
    )


def fresh_samples(mixture: Mixture, n: int, gen: torch.Generator) -> Tensor:
    """(a) A perfect generator: new independent samples of the real distribution."""
    return mixture.sample(n, gen)


def dropped_modes(mixture: Mixture, n: int, gen: torch.Generator, *, keep: int | None = None) -> Tensor:
    """(b) Mode dropping: only the first ``keep`` modes (half by default) are generated."""
    keep = mixture.num_modes // 2 if keep is None else keep
    return mixture.sample(n, gen, modes=torch.arange(keep))


def shrunken_modes(mixture: Mixture, n: int, gen: torch.Generator, *, factor: float = 0.3) -> Tensor:
    """(c) Every mode present, but its spread scaled by ``factor`` about its centre."""
    x, labels = mixture.sample_labelled(n, gen)
    centres = mixture.means[labels]
    return centres + factor * (x - centres)


def truncated_tails(mixture: Mixture, n: int, gen: torch.Generator, *, radius: float) -> Tensor:
    """(d) Tail truncation: samples farther than ``radius`` from their mode centre are redrawn."""
    kept: list[Tensor] = []
    have = 0
    while have < n:
        x, labels = mixture.sample_labelled(2 * n, gen)
        inside = x[(x - mixture.means[labels]).norm(dim=1) <= radius]
        kept.append(inside)
        have += inside.shape[0]
    return torch.cat(kept)[:n]


def mode_radius_quantile(
    mixture: Mixture, quantile: float, gen: torch.Generator, *, n: int = 20_000
) -> float:
    """The ``quantile`` of sample-to-own-centre distances (the truncation radius for a kept share)."""
    x, labels = mixture.sample_labelled(n, gen)
    return float(torch.quantile((x - mixture.means[labels]).norm(dim=1), quantile))


def memorized_copies(train: Tensor, n: int, gen: torch.Generator, *, noise: float = 1e-4) -> Tensor:
    """(e) A generator that memorised its training set: training rows plus tiny noise."""
    rows = torch.randperm(train.shape[0], generator=gen)[:n]
    copies = train[rows].to(torch.float64)
    return copies + noise * torch.randn(copies.shape, generator=gen, dtype=torch.float64)


def duplicates(mixture: Mixture, n: int, gen: torch.Generator, *, distinct: int = 10) -> Tensor:
    """(f) A handful of ``distinct`` samples repeated until there are ``n``."""
    pool = mixture.sample(distinct, gen)
    return pool[torch.arange(n) % distinct]


def fit_mixture(x: Tensor, labels: Tensor, num_modes: int) -> Mixture:
    """Maximum-likelihood per-mode Gaussians (covariance over N, not N - 1) from labelled samples.

    A mode with fewer than two samples left is dropped (weight zero): under recursive training a
    starved mode disappears, as in real model collapse.
    """
    dim = x.shape[1]
    means = torch.zeros(num_modes, dim, dtype=torch.float64)
    covs = torch.eye(dim, dtype=torch.float64).expand(num_modes, dim, dim).clone()
    counts = torch.bincount(labels, minlength=num_modes).to(torch.float64)
    for j in range(num_modes):
        rows = x[labels == j]
        if rows.shape[0] < 2:
            counts[j] = 0.0
            continue
        means[j] = rows.mean(dim=0)
        centred = rows - means[j]
        covs[j] = centred.T @ centred / rows.shape[0]
    return Mixture(means=means, covs=covs, weights=counts / counts.sum())


def recursive_generations(
    mixture: Mixture, gen: torch.Generator, *, generations: int = 5, n_fit: int = 240, n_eval: int = 800
) -> list[Tensor]:
    """(g) Recursive training, ``generations + 1`` sample sets of ``n_eval`` rows each.

    Generation 0 is the real distribution itself; generation g fits per-mode Gaussians to ``n_fit``
    samples of generation g - 1's model and is evaluated on fresh samples of its own. A small ``n_fit``
    makes every refit lose spread and tail mass (the maximum-likelihood covariance is biased low and its
    errors compound), the classic picture of model collapse.
    """
    source = mixture
    outputs = [mixture.sample(n_eval, gen)]
    for _ in range(generations):
        train, labels = source.sample_labelled(n_fit, gen)
        source = fit_mixture(train, labels, mixture.num_modes)
        outputs.append(source.sample(n_eval, gen))
    return outputs
