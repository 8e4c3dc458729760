"""The latent map: a 2-D picture of the feature space that keeps neighbourhoods.

Pure computation (no I/O): the real and synthetic sides in canonical row order in, map coordinates and
the canonical rows they belong to out. ``method="auto"`` picks:

- ``"tsne"``: t-SNE (scikit-learn, Barnes-Hut) fitted on uniform subsamples of at most
  ``max_points`` rows of each side *together*, after a PCA of the pooled subsamples to ``PCA_DIMS``
  dimensions (the usual pre-reduction: it drops noise directions, and the fit's cost no longer
  depends on d). Together rather than fitted on real and the synthetic rows placed on it afterwards
  (t-SNE has no transform; the closest rule would put each synthetic row at the distance-weighted mean
  of its nearest real rows' positions): that interpolation can only put a synthetic row inside the real
  map's clusters or between them, so synthetic regions of their own disappear, the picture the map is
  for. Measured on the digits demo (``bench/RESULTS_latent_map.md``), the share of real points among
  a synthetic point's 10 nearest map neighbours (0.50 where the sides mix; the holdout scores 0.49)
  fell from 0.48 (generation 0) to 0.22 (generation 5) fitted together, but only from 0.44 to 0.40
  placed (3 neighbours; 0.38 to 0.35 with 10). The price: the real layout changes from one synthetic
  set to the next.
- ``"pca"``: the first two principal axes of the real subsample, both sides projected on them, when
  t-SNE is out of its bounds: fewer than ``PROJECTION_TSNE_MIN_POINTS`` real rows, d <= 2, more
  points asked for than ``TSNE_MAX_POINTS`` per side (the cost bound), or sampled rows all equal.

Cost: bounded by ``2 * TSNE_MAX_POINTS`` points and ``TSNE_ITERATIONS``, whatever N; the t-SNE runs on
one thread (on two busy cores, two OpenMP threads made it 8x slower on the digits, not faster), the
PCA is O(points x d x min(points, d)). Measured on 2 shared CPU cores (``bench/RESULTS_latent_map.md``):
about 1 s for the digits demo (898 + 898 x 64), 2 s for 1,000 or 10,000 + as many rows of 2,048-d
Gaussians (no structure: Barnes-Hut's slowest case).

Deterministic: every draw comes from the caller's generator, the rows arrive in canonical order, the
principal axes get a fixed sign, and the fit runs on one thread, so the map is identical for any order
of the input rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from auditor.pipeline.report_data import PROJECTION_NEIGHBOURS, PROJECTION_TSNE_MIN_POINTS

Method = Literal["auto", "tsne", "pca"]

MAP_POINTS = 500  # per side; the report draws every mapped point
TSNE_MAX_POINTS = 500  # per side: the cost bound
TSNE_ITERATIONS = 350  # the first 250: scikit-learn's fixed early-exaggeration phase
PERPLEXITY = 30.0
PCA_DIMS = 50
SIDES = ("real", "synthetic")


@dataclass(frozen=True)
class LatentMap:
    """``points[side]`` (float64, n x 2) are the map coordinates of canonical rows ``rows[side]``
    (int64, ascending) of ``side`` ("real", "synthetic")."""

    method: Literal["tsne", "pca"]
    rows: dict[str, Tensor]
    points: dict[str, Tensor]


def _subsample(n: int, limit: int, generator: torch.Generator) -> Tensor:
    """At most ``limit`` positions out of ``n``, uniformly, ascending (the fit sees canonical order)."""
    if n <= limit:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:limit].sort().values


def _principal_axes(centred: Tensor, count: int) -> Tensor:
    """The first ``count`` principal axes (rows, unit length) of the centred rows, each signed so that
    its largest-magnitude loading is positive (eigenvector signs are arbitrary and may differ between
    LAPACK builds). From the eigenvectors of the smaller of the Gram and the covariance matrix: at
    1000 x 2048, a sixth of the time of an SVD."""
    n, d = centred.shape
    largest = float(centred.abs().max()) if centred.numel() else 0.0
    # The axes do not depend on the scale; dividing by the largest entry keeps the products finite.
    centred = centred / largest if largest > 0 else centred
    if d <= n:
        _, vectors = torch.linalg.eigh(centred.T @ centred)
        axes = vectors[:, -count:].flip(1).T
    else:
        values, vectors = torch.linalg.eigh(centred @ centred.T)
        top = vectors[:, -count:].flip(1)
        scale = values[-count:].flip(0).clamp_min(0.0).sqrt()
        # Left singular vectors to right ones: v = X^T u / s (a zero s: no direction, left at zero).
        axes = (centred.T @ top / torch.where(scale > 0, scale, 1.0)).T
        axes = axes * (scale > 0).unsqueeze(1)
    leading = axes.gather(1, axes.abs().argmax(1, keepdim=True))
    return axes * torch.where(leading < 0, -1.0, 1.0).to(axes.dtype)


def _tsne(features: Tensor, random_state: int) -> Tensor:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    tsne = TSNE(
        n_components=2,
        perplexity=min(PERPLEXITY, (features.shape[0] - 1) / 3),
        init="pca",
        learning_rate="auto",
        max_iter=TSNE_ITERATIONS,
        random_state=random_state,
    )
    with threadpool_limits(limits=1, user_api="openmp"):
        embedded = tsne.fit_transform(features.numpy())
    return torch.from_numpy(embedded).double()


def fit_latent_map(
    real: Tensor,
    synthetic: Tensor,
    generator: torch.Generator,
    *,
    max_points: int = MAP_POINTS,
    method: Method = "auto",
) -> LatentMap | None:
    """The map of ``real`` and ``synthetic`` (each in canonical row order, the same d): at most
    ``max_points`` rows of each side, uniformly subsampled. ``None`` for 1-D features or an empty side.

    ``method="tsne"`` out of t-SNE's bounds (see the module docstring) falls back to PCA as ``"auto"``
    does; :attr:`LatentMap.method` says which one made the map.
    """
    if real.ndim != 2 or real.shape[1] < 2 or real.shape[0] == 0 or synthetic.shape[0] == 0:
        return None
    rows = {"real": _subsample(real.shape[0], max_points, generator)}
    rows["synthetic"] = _subsample(synthetic.shape[0], max_points, generator)
    random_state = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    x = {
        side: t[rows[side].to(t.device)].detach().cpu().double()
        for side, t in zip(SIDES, (real, synthetic), strict=True)
    }
    n_real, dim = x["real"].shape
    use_tsne = (
        method != "pca" and dim > 2 and n_real >= PROJECTION_TSNE_MIN_POINTS and max_points <= TSNE_MAX_POINTS
    )
    pooled = torch.cat([x["real"], x["synthetic"]])
    centred = pooled - pooled.mean(0)
    largest = float(centred.abs().max())
    # Rows that are all the same have no neighbourhoods to keep (and crash scikit-learn's Barnes-Hut
    # tree); rescaling the rest changes no affinity t-SNE computes and keeps the distances finite.
    use_tsne = use_tsne and largest > 0
    if use_tsne:
        centred = centred / largest
        embedded = _tsne(centred @ _principal_axes(centred, min(PCA_DIMS, dim)).T, random_state)
        points = {"real": embedded[:n_real], "synthetic": embedded[n_real:]}
    else:
        mean = x["real"].mean(0)
        axes = _principal_axes(x["real"] - mean, 2).T
        points = {side: (x[side] - mean) @ axes for side in SIDES}
    return LatentMap(method="tsne" if use_tsne else "pca", rows=rows, points=points)


def real_neighbour_share(real_points: Tensor, points: Tensor, k: int = PROJECTION_NEIGHBOURS) -> float:
    """The mean, over ``points``, of the share of real points among each one's ``k`` nearest map
    neighbours in ``real_points`` and ``points`` together (itself excluded). Sides that mix give about
    :func:`chance_share`; a side that keeps to regions of its own, less.
    """
    n_real, n = real_points.shape[0], points.shape[0]
    if n == 0 or n_real == 0:
        return float("nan")
    pool = torch.cat([real_points, points]).double()
    # Exact differences (not the expanded form): duplicated points must be at distance 0, not near it.
    sq = torch.cdist(points.double(), pool, compute_mode="donot_use_mm_for_euclid_dist").square()
    sq[torch.arange(n), n_real + torch.arange(n)] = float("inf")
    _, nearest = torch.topk(sq, min(k, n_real + n - 1), dim=1, largest=False)
    return float((nearest < n_real).double().mean())


def chance_share(n_real: int, n: int) -> float:
    """What :func:`real_neighbour_share` gives for sides that mix perfectly: the real share of the
    pool a point's neighbours are drawn from."""
    return n_real / (n_real + n - 1) if n_real + n > 1 else float("nan")


__all__ = [
    "MAP_POINTS",
    "TSNE_MAX_POINTS",
    "LatentMap",
    "chance_share",
    "fit_latent_map",
    "real_neighbour_share",
]
