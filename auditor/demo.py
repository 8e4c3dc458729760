"""The demo: real digits, a good synthetic set, and a chain of recursively trained generations.

Real data: scikit-learn's bundled digits (8x8 images, 64 pixel features scaled to [0, 1]), split into a
training half (the "real" side) and a holdout half (the real-vs-real noise floor). Generation 0 is a
Gaussian mixture fitted on the real training data: a good synthetic set. Generation t + 1 is a fresh
mixture fitted on ``refit_samples`` samples of generation t only, the recursive-training loop in which
Shumailov et al. (2024) show model collapse: estimation error compounds, the tails go first, and the
distribution drifts and narrows, generation after generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

DEMO_POLICY = {
    "name": "demo-gate",
    "rules": [
        {"metric": "fid", "max": 0.25, "tier": "fail"},
        {"metric": "recall", "min": 0.6, "on": "ci_high", "tier": "fail"},
        {"metric": "coverage", "min": 0.6, "tier": "warn"},
        {"metric": "tail_recall", "min": 0.3, "tier": "warn"},
        {"metric": "memorization_rate", "max": 0.05, "tier": "fail"},
    ],
}
MIXTURE_COMPONENTS = 10


@dataclass
class DemoData:
    real: Path
    holdout: Path
    generations: list[Path]
    policy: Path


def build_demo_data(
    workdir: Path, *, generations: int = 5, refit_samples: int = 300, seed: int = 0
) -> DemoData:
    """Write real.npy, holdout.npy, generation_<t>.npy and policy.yaml under ``workdir``."""
    from sklearn.datasets import load_digits
    from sklearn.mixture import GaussianMixture

    workdir.mkdir(parents=True, exist_ok=True)
    pixels = load_digits().data.astype(np.float64) / 16.0
    order = np.random.default_rng(seed).permutation(len(pixels))
    half = len(pixels) // 2
    real, holdout = pixels[order[:half]], pixels[order[half:]]
    paths = DemoData(
        real=workdir / "real.npy",
        holdout=workdir / "holdout.npy",
        generations=[],
        policy=workdir / "policy.yaml",
    )
    np.save(paths.real, real.astype(np.float32))
    np.save(paths.holdout, holdout.astype(np.float32))
    paths.policy.write_text(yaml.safe_dump(DEMO_POLICY, sort_keys=False))

    training = real
    for t in range(generations + 1):
        mixture = GaussianMixture(
            MIXTURE_COMPONENTS, covariance_type="full", reg_covar=1e-3, random_state=seed + t
        ).fit(training)
        samples, _ = mixture.sample(len(real))
        # sample() returns components in blocks; shuffle so any prefix is a fair sample
        samples = samples[np.random.default_rng(seed + t).permutation(len(samples))]
        path = workdir / f"generation_{t}.npy"
        np.save(path, samples.astype(np.float32))
        paths.generations.append(path)
        training = samples[:refit_samples]
    return paths
