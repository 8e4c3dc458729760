"""The latent map's cost, and why its t-SNE is fitted on both sides together.

    python bench/bench_latent_map.py [--out bench/RESULTS_latent_map.md] [--repeats 5]

* cost: wall time of ``fit_latent_map`` (subsample, PCA to 50 dimensions, t-SNE on one thread) at the
  digits demo's shape (898 real x 64, generation 0 and 5) and at d = 2048 (seeded Gaussians, no
  structure: Barnes-Hut's slowest case) for 1,000 and 10,000 rows per side; each side is subsampled
  to ``MAP_POINTS``, so the t-SNE sees at most 2 x ``MAP_POINTS`` points whatever N. Minimum and
  median over ``--repeats`` (on a shared machine the minimum is the cost alone); the old PCA scatter
  for reference.
* structure: the share of real points among a synthetic point's 10 nearest map neighbours
  (``real_neighbour_share``; 0.50 where the sides mix) for the holdout and the demo's generations
  0 to 5, with the map fitted on both sides together (what the auditor does) and with t-SNE fitted on
  real alone and the synthetic rows placed at the inverse-distance-weighted mean of the map positions
  of their 3 or 10 nearest fitted real rows (t-SNE has no transform).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.demo import build_demo_data  # noqa: E402
from auditor.metrics.canonical import canonical_rows  # noqa: E402
from auditor.pipeline import latent_map as lm  # noqa: E402


def times(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(minimum, median) wall time: on a shared machine the minimum is the closest to the cost alone."""
    spent = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        spent.append(time.perf_counter() - start)
    return min(spent), statistics.median(spent)


def old_pca(real: torch.Tensor, synthetic: torch.Tensor) -> None:
    """The projection the report had before: 600 rows per side on the real data's first two axes."""
    gen = torch.Generator().manual_seed(6)
    r = real[torch.randperm(real.shape[0], generator=gen)[:600]].double()
    s = synthetic[torch.randperm(synthetic.shape[0], generator=gen)[:600]].double()
    mean = real.double().mean(0)
    _, _, v = torch.linalg.svd(r - mean, full_matrices=False)
    (r - mean) @ v[:2].T, (s - mean) @ v[:2].T


def placed(real: torch.Tensor, synthetic: torch.Tensor, k: int) -> float:
    """t-SNE on real alone, each synthetic row at the inverse-distance-weighted mean of its k nearest
    fitted real rows' map positions; the same subsamples, PCA and t-SNE settings as the auditor's."""
    gen = torch.Generator().manual_seed(0)
    r = real[lm._subsample(real.shape[0], lm.MAP_POINTS, gen)].double()
    s = synthetic[lm._subsample(synthetic.shape[0], lm.MAP_POINTS, gen)].double()
    centred = r - r.mean(0)
    positions = lm._tsne(centred @ lm._principal_axes(centred, lm.PCA_DIMS).T, 0)
    sq, nearest = torch.topk(torch.cdist(s, r).square(), k, dim=1, largest=False)
    weights = 1.0 / sq.sqrt().clamp_min(1e-9)
    weights = weights / weights.sum(1, keepdim=True)
    points = (weights.unsqueeze(2) * positions[nearest]).sum(1)
    return lm.real_neighbour_share(positions, points)


def joint(real: torch.Tensor, synthetic: torch.Tensor) -> float:
    latent = lm.fit_latent_map(real, synthetic, torch.Generator().manual_seed(0))
    assert latent is not None and latent.method == "tsne"
    return lm.real_neighbour_share(latent.points["real"], latent.points["synthetic"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS_latent_map.md")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    demo = build_demo_data(Path(tempfile.mkdtemp()))
    real = canonical_rows(torch.from_numpy(np.load(demo.real)))
    holdout = canonical_rows(torch.from_numpy(np.load(demo.holdout)))
    generations = [canonical_rows(torch.from_numpy(np.load(p))) for p in demo.generations]

    cost_rows = []
    cases = [("digits, generation 0", real, generations[0]), ("digits, generation 5", real, generations[5])]
    gen = torch.Generator().manual_seed(0)
    for n in (1000, 10_000):
        gauss = torch.randn(n, 2048, generator=gen), 0.9 * torch.randn(n, 2048, generator=gen)
        cases.append((f"Gaussian {n:,} + {n:,} x 2048", *gauss))
    for name, r, s in cases:
        r, s = canonical_rows(r), canonical_rows(s)
        latent = times(
            lambda r=r, s=s: lm.fit_latent_map(r, s, torch.Generator().manual_seed(0)), args.repeats
        )
        pca = times(lambda r=r, s=s: old_pca(r, s), args.repeats)
        size = f"{r.shape[0]:,} + {s.shape[0]:,} x {r.shape[1]}"
        cost_rows.append(
            f"| {name} | {size} | {latent[0]:.2f} / {latent[1]:.2f} | {pca[0]:.3f} / {pca[1]:.3f} |"
        )
        print(cost_rows[-1], flush=True)

    share_rows = []
    for name, s in [("holdout", holdout)] + [(f"generation {t}", g) for t, g in enumerate(generations)]:
        values = (joint(real, s), placed(real, s, 3), placed(real, s, 10))
        share_rows.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
        print(share_rows[-1], flush=True)

    load_after = os.getloadavg()[0]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"""# The latent map: cost, and fitted together vs placed

Command: `python bench/bench_latent_map.py --repeats {args.repeats}`

Run: {now} on {platform.machine()}, {os.cpu_count()} logical cores (shared); t-SNE on one thread, torch
threads: library default. Load average before {load_before:.2f}, after {load_after:.2f}.
Settings: at most {lm.MAP_POINTS} rows per side, PCA to {lm.PCA_DIMS} dimensions,
perplexity {lm.PERPLEXITY:g}, {lm.TSNE_ITERATIONS} iterations.

## Cost (seconds, minimum / median of {args.repeats})

| data | rows x d | latent map | old PCA scatter |
|---|---|---:|---:|
{chr(10).join(cost_rows)}

## Share of real points among a synthetic point's 10 nearest map neighbours

0.50 where the sides mix (at {lm.MAP_POINTS} + {lm.MAP_POINTS} points, 0.5005). Fitted together: the
auditor's map. Placed: t-SNE fitted on real alone, each synthetic row at the inverse-distance-weighted
mean of the map positions of its k nearest fitted real rows.

| synthetic side | fitted together | placed, k = 3 | placed, k = 10 |
|---|---:|---:|---:|
{chr(10).join(share_rows)}
"""
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
