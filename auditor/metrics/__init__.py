"""Metric registry: result keys are the registry names.

Each metric is a small pure function in its own module; the kNN family reads one shared
:class:`~auditor.metrics.knn.KnnGraph`. ``version`` enters the protocol fingerprint, so bump it when a
metric's definition or defaults change: history never mixes values computed under different versions.
(kNN family 2: exact on ties; kid 2, vendi_ratio 2, mode_* 3: subsets and k-means seeds drawn in
canonical row order.)
"""

from __future__ import annotations

from dataclasses import dataclass

# mode_coverage: a real mode counts as covered when it receives at least this share of its real mass.
MIN_MODE_SHARE = 0.1


@dataclass(frozen=True)
class MetricSpec:
    name: str
    version: str
    higher_is_better: bool
    family: str  # fidelity | diversity | collapse | memorization
    summary: str
    ideal: float | None = None  # the value a perfect synthetic set would get, where there is one


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in [
        MetricSpec("fid", "1", False, "fidelity", "Frechet distance of Gaussian fits", 0.0),
        MetricSpec("kid", "2", False, "fidelity", "Unbiased MMD^2, cubic polynomial kernel", 0.0),
        MetricSpec("precision", "2", True, "fidelity", "Synthetic inside the real manifold", 1.0),
        MetricSpec("recall", "2", True, "diversity", "Real inside the synthetic manifold", 1.0),
        MetricSpec("density", "2", True, "fidelity", "Real-ball membership count / k", 1.0),
        MetricSpec("coverage", "2", True, "diversity", "Real balls holding a synthetic sample", 1.0),
        MetricSpec("vendi", "1", True, "diversity", "Effective number of distinct synthetic samples"),
        MetricSpec("vendi_ratio", "2", True, "diversity", "Vendi(synthetic) / Vendi(real, equal N)", 1.0),
        MetricSpec("mode_coverage", "3", True, "collapse", "Real modes receiving >= 10% of their mass", 1.0),
        MetricSpec("mode_jsd", "3", False, "collapse", "JS divergence of mode histograms (bits)", 0.0),
        MetricSpec("tail_recall", "2", True, "collapse", "Recall on the sparsest 10% of real data", 1.0),
        MetricSpec("effective_rank_ratio", "1", True, "collapse", "Effective rank synthetic / real", 1.0),
        MetricSpec("duplicate_rate", "2", False, "memorization", "Synthetic with a synthetic twin"),
        MetricSpec("memorization_rate", "2", False, "memorization", "Synthetic near-copies of real"),
        MetricSpec("authenticity", "2", True, "memorization", "Synthetic not closer than real's own NN"),
    ]
}

KNN_METRICS = frozenset(
    {
        "precision",
        "recall",
        "density",
        "coverage",
        "tail_recall",
        "duplicate_rate",
        "memorization_rate",
        "authenticity",
    }
)

__all__ = ["KNN_METRICS", "METRICS", "MIN_MODE_SHARE", "MetricSpec"]
