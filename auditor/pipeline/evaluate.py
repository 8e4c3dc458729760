"""Stage "score": every metric with its bootstrap interval and holdout baseline, from three tensors.

Pure computation (no I/O, no database): features in, :class:`Evaluation` out. Every stage reads each
side in canonical row order (:mod:`auditor.metrics.canonical`), so values, intervals and baselines are
identical for any order of the input rows.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor

from auditor.errors import DimensionMismatchError, TooFewSamplesError, UnknownNameError
from auditor.metrics import KNN_METRICS, METRICS, prdc, tails
from auditor.metrics import memorization as mem
from auditor.metrics.bootstrap import (
    bias_corrected_interval,
    bootstrap_means,
    indices_to_weights,
    percentile_interval,
    resample_index_chunks,
)
from auditor.metrics.canonical import canonical_order
from auditor.metrics.fid import frechet_distance
from auditor.metrics.gaussian import GaussianStats, weighted_stats
from auditor.metrics.kid import kernel_inception_distance
from auditor.metrics.knn import KnnGraph, build_knn_graph
from auditor.metrics.modes import (
    ModeHistogram,
    assign_to_centroids,
    centroid_distances,
    choose_num_modes,
    kmeans,
    mode_counts,
    mode_coverage,
    mode_histogram,
    mode_jsd,
)
from auditor.metrics.spectrum import effective_rank, entropy_of, normalized_spectrum
from auditor.metrics.vendi import vendi_score, vendi_scores
from auditor.metrics.warnings import SampleSizeWarning
from auditor.pipeline.diagnostics import Columns, SideRows, sample_columns
from auditor.pipeline.latent_map import fit_latent_map, real_neighbour_share
from auditor.pipeline.progress import NullProgress, ProgressReporter
from auditor.pipeline.report_data import ReportData

# Size ratio beyond which set-size-dependent metrics (recall, coverage, density, vendi) are biased
# enough to warn about.
SIZE_RATIO_WARNING = 2.0
SPECTRUM_POINTS = 64

# Fixed per-purpose seed offsets: choosing a subset of metrics never changes another metric's value.
_SEED_OFFSETS = {"bootstrap": 1, "spectral": 2, "kid": 3, "modes": 4, "vendi": 5, "projection": 6}


# Caller-controlled numbers all have a bound: these are the schema's (absolute sanity); the operator's
# lower maxima are settings (AUDITOR_MAX_*, checked by auditor.pipeline.limits before any work).
MAX_SEED = 2**53 - 1  # exact in JSON and JavaScript; seed * 1000 + offset stays a valid torch seed
DEFAULT_MEMORY_BUDGET_MB = 128


class MetricParams(BaseModel):
    """Every knob that changes a metric's value; all of it enters the protocol fingerprint
    (except ``memory_budget_mb``, which changes only how the work is tiled)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metrics: tuple[str, ...] = Field(default_factory=lambda: tuple(METRICS), min_length=1, max_length=64)
    nearest_k: int = Field(5, ge=1, le=1000)
    bootstrap: int = Field(
        200, ge=0, le=1_000_000, description="Replicates for the per-sample metrics; 0 = no CI."
    )
    spectral_bootstrap: int = Field(
        20,
        ge=0,
        le=100_000,
        description="Replicates for fid, vendi, effective_rank_ratio (each costs O(d^3)).",
    )
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    kid_subset_size: int = Field(1000, ge=2, le=10_000_000)
    kid_subsets: int = Field(100, ge=1, le=1_000_000)
    tail_fraction: float = Field(0.1, gt=0, le=1)
    num_modes: int | None = Field(None, ge=2, le=100_000)
    knn_dtype: str = Field("float32", pattern="^(float32|float64)$")
    memory_budget_mb: int | None = Field(
        None,
        ge=16,
        le=1 << 20,
        description="Working-memory budget of the metrics (MiB); default and maximum: the operator's "
        "AUDITOR_MEMORY_BUDGET_MB.",
    )

    @property
    def budget_bytes(self) -> int:
        return (self.memory_budget_mb or DEFAULT_MEMORY_BUDGET_MB) << 20

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
        if not names:
            raise ValueError("at least one metric is required")
        return tuple(dict.fromkeys(names))


@dataclass
class MetricValue:
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    baseline: float | None = None  # the same metric for the real holdout: the real-vs-real noise floor
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}
        doc["baseline"] = self.baseline
        doc.update(self.extra)
        return doc


@dataclass
class Evaluation:
    metrics: dict[str, MetricValue]
    warnings: list[dict[str, str]]
    report: ReportData
    details: dict[str, Any]
    # Per-sample evidence by side, rows in input order (auditor.pipeline.diagnostics); which parts were
    # computed: {"knn": bool, "modes": bool}.
    samples: dict[str, Columns] = field(default_factory=dict)
    samples_computed: dict[str, bool] = field(default_factory=dict)


def _generator(seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1000 + _SEED_OFFSETS[purpose])


def validate_features(real: Tensor, synthetic: Tensor, holdout: Tensor | None, params: MetricParams) -> None:
    sides = {"real": real, "synthetic": synthetic, **({"holdout": holdout} if holdout is not None else {})}
    for name, x in sides.items():
        if x.ndim != 2:
            raise DimensionMismatchError(
                f"{name} features must be 2-D (samples x dims), got {tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise TooFewSamplesError(f"the {name} set is empty")
    dims = {name: int(x.shape[1]) for name, x in sides.items()}
    if len(set(dims.values())) != 1:
        raise DimensionMismatchError(
            f"feature dimensions differ: {dims}; both sides must come from the same extractor",
            details={"dims": dims},
        )
    min_n = params.nearest_k + 1 if set(params.metrics) & KNN_METRICS else 2
    for name, x in sides.items():
        if x.shape[0] < min_n:
            raise TooFewSamplesError(
                f"the {name} set has {x.shape[0]} samples; nearest_k={params.nearest_k} needs at least "
                f"{min_n} per side (lower --nearest-k or provide more samples)",
                details={"side": name, "n": int(x.shape[0]), "needed": min_n},
            )


def _sample_size_warnings(
    real: Tensor, synthetic: Tensor, holdout: Tensor | None, params: MetricParams
) -> None:
    n, m, d = real.shape[0], synthetic.shape[0], real.shape[1]
    wanted = set(params.metrics)
    if wanted & {"fid", "effective_rank_ratio"} and min(n, m) < d:
        warnings.warn(
            f"N < d for the Gaussian fit (n_real={n}, n_synthetic={m}, d={d}): the covariances are "
            "rank-deficient and fid is biased upward; use more samples or compare only at equal N",
            SampleSizeWarning,
            stacklevel=3,
        )
    ratio = max(n, m) / min(n, m)
    if ratio > SIZE_RATIO_WARNING and wanted & {"recall", "coverage", "density", "precision"}:
        warnings.warn(
            f"set sizes differ {ratio:.1f}x (n_real={n}, n_synthetic={m}): k-NN radii shrink with N, "
            "so precision/recall/density/coverage are biased; subsample to equal sizes to compare",
            SampleSizeWarning,
            stacklevel=3,
        )
    if "kid" in wanted and min(n, m) < params.kid_subset_size:
        warnings.warn(
            f"kid subset size {params.kid_subset_size} exceeds the smaller set ({min(n, m)}); "
            f"using subsets of {min(n, m)}",
            SampleSizeWarning,
            stacklevel=3,
        )
    if holdout is not None and not (0.5 <= holdout.shape[0] / m <= 2.0):
        warnings.warn(
            f"holdout size ({holdout.shape[0]}) differs from the synthetic set ({m}): size-dependent "
            "baselines (recall, coverage, fid, kid) are not at the same N",
            SampleSizeWarning,
            stacklevel=3,
        )


def _score_metric(
    scores_fn: Callable[[KnnGraph], Tensor],
    graph: KnnGraph,
    holdout_graph: KnnGraph | None,
    params: MetricParams,
    generator: torch.Generator,
) -> MetricValue:
    scores = scores_fn(graph)
    value = MetricValue(value=float(scores.mean()))
    if params.bootstrap > 0:
        value.ci_low, value.ci_high = percentile_interval(
            bootstrap_means(scores, params.bootstrap, generator, params.budget_bytes), params.confidence
        )
    if holdout_graph is not None:
        value.baseline = float(scores_fn(holdout_graph).mean())
    return value


_KNN_SCORES: dict[str, Callable[[KnnGraph, MetricParams], Tensor]] = {
    "precision": lambda g, params: prdc.precision_scores(g),
    "recall": lambda g, params: prdc.recall_scores(g),
    "density": lambda g, params: prdc.density_scores(g),
    "coverage": lambda g, params: prdc.coverage_scores(g),
    "tail_recall": lambda g, params: tails.tail_recall_scores(g, params.tail_fraction),
    "duplicate_rate": lambda g, params: mem.duplicate_scores(g),
    "memorization_rate": lambda g, params: mem.memorization_scores(g),
    "authenticity": lambda g, params: mem.authenticity_scores(g),
}


def _plug_in_value(
    point: float,
    baseline: float | None,
    replicates: list[float],
    confidence: float,
    *,
    upper: float | None = None,
) -> MetricValue:
    """A plug-in statistic (non-negative) with its bias-corrected bootstrap interval, if replicates exist."""
    value = MetricValue(value=point, baseline=baseline)
    if replicates:
        value.ci_low, value.ci_high = bias_corrected_interval(
            torch.tensor(replicates), point, confidence, lower=0.0, upper=upper
        )
    return value


def _bind_params(
    fn: Callable[[KnnGraph, MetricParams], Tensor], params: MetricParams, graph: KnnGraph
) -> Tensor:
    return fn(graph, params)


def _knn_metrics(
    real: Tensor,
    synthetic: Tensor,
    holdout: Tensor | None,
    params: MetricParams,
    progress: ProgressReporter,
    out: dict[str, MetricValue],
    details: dict[str, Any],
) -> tuple[KnnGraph, KnnGraph | None] | None:
    """The kNN metrics; returns the graphs (synthetic, holdout) they read, for the diagnostics."""
    wanted = [name for name in params.metrics if name in KNN_METRICS]
    if not wanted:
        return None
    dtype = torch.float32 if params.knn_dtype == "float32" else torch.float64
    budget = params.budget_bytes
    progress.start("knn", 2 if holdout is not None else 1)
    graph = build_knn_graph(real, synthetic, params.nearest_k, budget_bytes=budget, dtype=dtype)
    progress.advance("knn")
    holdout_graph = None
    if holdout is not None:
        holdout_graph = build_knn_graph(
            real, holdout, params.nearest_k, real_radii=graph.real, budget_bytes=budget, dtype=dtype
        )
        progress.advance("knn")
    progress.finish("knn")
    details["copy_threshold_tau"] = float(mem.copy_threshold(graph))
    for name in wanted:
        # A fresh generator per metric: a metric's interval must not depend on which other metrics were
        # requested, or in what order (metrics over the same side then share their resamples).
        out[name] = _score_metric(
            functools.partial(_bind_params, _KNN_SCORES[name], params),
            graph,
            holdout_graph,
            params,
            _generator(params.seed, "bootstrap"),
        )
    return graph, holdout_graph


def _spectral_metrics(
    real: Tensor,
    synthetic: Tensor,
    holdout: Tensor | None,
    params: MetricParams,
    progress: ProgressReporter,
    out: dict[str, MetricValue],
    report: ReportData,
) -> None:
    wanted = [n for n in ("fid", "effective_rank_ratio") if n in params.metrics]
    if not wanted:
        return
    # The statistics shift each side internally (one float64 chunk at a time): no float64 copies.
    stats_real = GaussianStats.from_features(real)
    stats_synth = GaussianStats.from_features(synthetic)
    stats_hold = GaussianStats.from_features(holdout) if holdout is not None else None
    spec_real, spec_synth = normalized_spectrum(stats_real.cov), normalized_spectrum(stats_synth.cov)
    report.spectrum_real = spec_real[:SPECTRUM_POINTS].tolist()
    report.spectrum_synthetic = spec_synth[:SPECTRUM_POINTS].tolist()

    # The full-sample effective ranks come from the spectra already computed for the report (the same
    # eigenvalues effective_rank would compute again).
    rank_real, rank_synth = entropy_of(spec_real).exp(), entropy_of(spec_synth).exp()

    def compute(
        a: GaussianStats, b: GaussianStats, rank_a: Tensor | None = None, rank_b: Tensor | None = None
    ) -> dict[str, float]:
        values = {}
        if "fid" in wanted:
            values["fid"] = float(frechet_distance(a, b))
        if "effective_rank_ratio" in wanted:
            rank_a = effective_rank(a.cov) if rank_a is None else rank_a
            rank_b = effective_rank(b.cov) if rank_b is None else rank_b
            values["effective_rank_ratio"] = float(rank_b / rank_a)
        return values

    point = compute(stats_real, stats_synth, rank_real, rank_synth)
    baseline = compute(stats_real, stats_hold, rank_real) if stats_hold is not None else {}
    replicates: dict[str, list[float]] = {name: [] for name in wanted}
    if params.spectral_bootstrap > 0:
        gen = _generator(params.seed, "spectral")
        progress.start("bootstrap-spectral", params.spectral_bootstrap)
        sizes = [real.shape[0], synthetic.shape[0]]
        for idx_real, idx_synth in resample_index_chunks(
            sizes, params.spectral_bootstrap, gen, params.budget_bytes
        ):
            w_real, w_synth = indices_to_weights(idx_real, sizes[0]), indices_to_weights(idx_synth, sizes[1])
            for b in range(w_real.shape[0]):
                rep = compute(weighted_stats(real, w_real[b]), weighted_stats(synthetic, w_synth[b]))
                for name, v in rep.items():
                    replicates[name].append(v)
                progress.advance("bootstrap-spectral")
        progress.finish("bootstrap-spectral")
    for name in wanted:
        out[name] = _plug_in_value(point[name], baseline.get(name), replicates[name], params.confidence)


def _vendi_metrics(
    real: Tensor,
    synthetic: Tensor,
    holdout: Tensor | None,
    params: MetricParams,
    progress: ProgressReporter,
    out: dict[str, MetricValue],
    details: dict[str, Any],
) -> None:
    wanted = [n for n in ("vendi", "vendi_ratio") if n in params.metrics]
    if not wanted:
        return
    gen = _generator(params.seed, "vendi")
    m = synthetic.shape[0]
    # The reference diversity is measured at the synthetic set's N: Vendi grows with N.
    sub_n = min(m, real.shape[0])
    real_sub = real[torch.randperm(real.shape[0], generator=gen)[:sub_n].to(real.device)]
    details["vendi_real_subsample"] = sub_n
    v_real = vendi_score(real_sub)
    v_synth = vendi_score(synthetic)
    point = {"vendi": float(v_synth), "vendi_ratio": float(v_synth / v_real)}
    baseline: dict[str, float] = {}
    if holdout is not None:
        hold_sub = holdout[torch.randperm(holdout.shape[0], generator=gen)[: min(m, holdout.shape[0])]]
        v_hold = vendi_score(hold_sub)
        baseline = {"vendi": float(v_hold), "vendi_ratio": float(v_hold / v_real)}
    replicates: dict[str, list[float]] = {"vendi": [], "vendi_ratio": []}
    if params.spectral_bootstrap > 0:
        progress.start("bootstrap-vendi", params.spectral_bootstrap)
        budget = params.budget_bytes
        for idx_s, idx_r in resample_index_chunks([m, sub_n], params.spectral_bootstrap, gen, budget):
            w_s, w_r = indices_to_weights(idx_s, m), indices_to_weights(idx_r, sub_n)
            vs = vendi_scores(synthetic, w_s, budget_bytes=budget).cpu()
            vr = vendi_scores(real_sub, w_r, budget_bytes=budget).cpu()
            replicates["vendi"].extend(vs.tolist())
            replicates["vendi_ratio"].extend((vs / vr).tolist())
            progress.advance("bootstrap-vendi", int(w_s.shape[0]))
        progress.finish("bootstrap-vendi")
    for name in wanted:
        out[name] = _plug_in_value(point[name], baseline.get(name), replicates[name], params.confidence)


def _kid_metric(
    real: Tensor,
    synthetic: Tensor,
    holdout: Tensor | None,
    params: MetricParams,
    progress: ProgressReporter,
    out: dict[str, MetricValue],
) -> None:
    if "kid" not in params.metrics:
        return
    progress.start("kid", 2 if holdout is not None else 1)
    budget = params.budget_bytes
    est = kernel_inception_distance(
        real,
        synthetic,
        subset_size=params.kid_subset_size,
        subsets=params.kid_subsets,
        generator=_generator(params.seed, "kid"),
        budget_bytes=budget,
    )
    progress.advance("kid")
    value = MetricValue(value=float(est.mean), extra={"std": float(est.std), "subset_size": est.subset_size})
    # Normal approximation: the unbiased MMD^2 estimator's variance falls as 1/n, so the spread of
    # per-subset estimates at size m scales to the full sample by sqrt(m / n). Subsets that cover
    # (nearly) the whole set all agree and say nothing about sampling noise, so the spread is then
    # measured on half-size subsets instead.
    n_min = min(real.shape[0], synthetic.shape[0])
    spread, spread_size = float(est.std), est.subset_size
    if est.subset_size > n_min // 2 and n_min >= 4:
        half_est = kernel_inception_distance(
            real,
            synthetic,
            subset_size=n_min // 2,
            subsets=min(params.kid_subsets, 50),
            generator=_generator(params.seed + 1, "kid"),
            budget_bytes=budget,
        )
        spread, spread_size = float(half_est.std), half_est.subset_size
    z = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + params.confidence / 2)))
    half = z * spread * math.sqrt(spread_size / n_min)
    value.ci_low, value.ci_high = value.value - half, value.value + half
    if holdout is not None:
        hold = kernel_inception_distance(
            real,
            holdout,
            subset_size=params.kid_subset_size,
            subsets=params.kid_subsets,
            generator=_generator(params.seed, "kid"),
            budget_bytes=budget,
        )
        value.baseline = float(hold.mean)
        progress.advance("kid")
    progress.finish("kid")
    out["kid"] = value


def _mode_metrics(
    real: Tensor,
    synthetic: Tensor,
    holdout: Tensor | None,
    params: MetricParams,
    progress: ProgressReporter,
    out: dict[str, MetricValue],
    report: ReportData,
    details: dict[str, Any],
) -> tuple[dict[str, Tensor], Tensor] | None:
    """The mode metrics; returns every side's labels (real, synthetic, holdout) and each real sample's
    distance to its mode's centroid (the smallest are the mode's typical samples), for the diagnostics."""
    wanted = [n for n in ("mode_coverage", "mode_jsd") if n in params.metrics]
    if not wanted:
        return None
    gen = _generator(params.seed, "modes")
    k = params.num_modes or choose_num_modes(real.shape[0])
    k = min(k, real.shape[0])
    details["num_modes"] = k
    progress.start("modes", None)
    centroids = kmeans(real.double(), k, generator=gen)
    real_labels = assign_to_centroids(real.double(), centroids).cpu()
    real_distances = centroid_distances(real, centroids, real_labels, budget_bytes=params.budget_bytes).cpu()
    synth_labels = assign_to_centroids(synthetic.double(), centroids).cpu()
    hist = mode_histogram(real_labels, synth_labels, k)
    labels = {"real": real_labels, "synthetic": synth_labels}
    report.mode_real_share = hist.real_share.tolist()
    report.mode_synthetic_share = hist.synthetic_share.tolist()
    fns = {"mode_coverage": mode_coverage, "mode_jsd": mode_jsd}
    baseline: dict[str, float] = {}
    if holdout is not None:
        labels["holdout"] = assign_to_centroids(holdout.double(), centroids).cpu()
        hold_hist = mode_histogram(real_labels, labels["holdout"], k)
        baseline = {name: float(fns[name](hold_hist)) for name in wanted}
    replicates: dict[str, list[float]] = {name: [] for name in wanted}
    if params.bootstrap > 0:
        # Each chunk's histograms at once (one bincount per side); chunks of replicates within the budget.
        sizes = [real_labels.shape[0], synth_labels.shape[0]]
        for real_idx, synth_idx in resample_index_chunks(sizes, params.bootstrap, gen, params.budget_bytes):
            reps = ModeHistogram(
                real_counts=mode_counts(real_labels[real_idx], k),
                synthetic_counts=mode_counts(synth_labels[synth_idx], k),
            )
            for name in wanted:
                replicates[name].extend(fns[name](reps).tolist())
    progress.finish("modes")
    for name in wanted:
        out[name] = _plug_in_value(
            float(fns[name](hist)), baseline.get(name), replicates[name], params.confidence, upper=1.0
        )
    return labels, real_distances


def _projection(
    real: Tensor,
    synthetic: Tensor,
    graphs: tuple[KnnGraph, KnnGraph | None] | None,
    labels: dict[str, Tensor] | None,
    orders: dict[str, Tensor],
    params: MetricParams,
    progress: ProgressReporter,
    report: ReportData,
) -> None:
    """The latent map (:mod:`auditor.pipeline.latent_map`) with what the report marks on it: each point's
    input row and mode, and the points the kNN metrics flag (the same per-sample scores the metrics
    average, as in :mod:`auditor.pipeline.diagnostics`)."""
    progress.start("map", None)
    latent = fit_latent_map(real, synthetic, _generator(params.seed, "projection"))
    progress.finish("map")
    if latent is None:
        return
    rows = latent.rows
    largest = float(torch.cat([latent.points["real"], latent.points["synthetic"]]).abs().max())
    report.projection_method = latent.method
    report.projection_real = _plot_points(latent.points["real"], largest)
    report.projection_synthetic = _plot_points(latent.points["synthetic"], largest)
    report.projection_real_index = orders["real"].cpu()[rows["real"]].tolist()
    report.projection_synthetic_index = orders["synthetic"].cpu()[rows["synthetic"]].tolist()
    if labels is not None:
        report.projection_real_mode = labels["real"].cpu()[rows["real"]].tolist()
        report.projection_synthetic_mode = labels["synthetic"].cpu()[rows["synthetic"]].tolist()
    if graphs is not None:
        graph = graphs[0]
        flags = {
            "uncovered": (rows["real"], prdc.coverage_scores(graph) < 0.5),
            "off_manifold": (rows["synthetic"], prdc.precision_scores(graph) < 0.5),
            "copy": (rows["synthetic"], mem.memorization_scores(graph) > 0.5),
        }
        report.projection_marks = {
            kind: torch.nonzero(flag.cpu()[side_rows]).flatten().tolist()
            for kind, (side_rows, flag) in flags.items()
        }
    report.projection_neighbour_share = real_neighbour_share(
        latent.points["real"], latent.points["synthetic"]
    )


def _plot_points(points: Tensor, largest: float, significant: int = 4) -> list[list[float]]:
    """Coordinates rounded to ``significant`` digits of the largest one: a scatter plot cannot show
    more, and the stored report (written with every audit) is a third of the size."""
    if not math.isfinite(largest) or largest == 0.0:
        return points.tolist()
    digits = significant - 1 - math.floor(math.log10(largest))
    return [[round(x, digits), round(y, digits)] for x, y in points.tolist()]


def evaluate(
    real: Tensor,
    synthetic: Tensor,
    holdout: Tensor | None = None,
    params: MetricParams | None = None,
    progress: ProgressReporter | None = None,
) -> Evaluation:
    """Compute every requested metric with its interval and (given a holdout) its real-vs-real baseline."""
    params = params or MetricParams()
    progress = progress or NullProgress()
    unknown = [n for n in params.metrics if n not in METRICS]
    if unknown:
        raise UnknownNameError(f"unknown metric(s): {unknown}")
    validate_features(real, synthetic, holdout, params)
    metrics: dict[str, MetricValue] = {}
    report = ReportData()
    details: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SampleSizeWarning)
        _sample_size_warnings(real, synthetic, holdout, params)
        # Every stage reads the sides in canonical row order (auditor.metrics.canonical): seeded draws
        # (subsets, subsamples, bootstrap resamples, k-means seeds) and sums then do not depend on the
        # order of the input rows, so neither do values and intervals.
        # The permutations are kept: the per-sample diagnostics map every row back to the input.
        orders = {"real": canonical_order(real), "synthetic": canonical_order(synthetic)}
        real, synthetic = real[orders["real"]], synthetic[orders["synthetic"]]
        if holdout is not None:
            orders["holdout"] = canonical_order(holdout)
            holdout = holdout[orders["holdout"]]
        graphs = _knn_metrics(real, synthetic, holdout, params, progress, metrics, details)
        _spectral_metrics(real, synthetic, holdout, params, progress, metrics, report)
        _vendi_metrics(real, synthetic, holdout, params, progress, metrics, details)
        _kid_metric(real, synthetic, holdout, params, progress, metrics)
        modes = _mode_metrics(real, synthetic, holdout, params, progress, metrics, report, details)
        labels, mode_distance = modes if modes is not None else (None, None)
        _projection(real, synthetic, graphs, labels, orders, params, progress, report)
    recorded = [
        {"category": w.category.__name__, "message": str(w.message)}
        for w in caught
        if issubclass(w.category, SampleSizeWarning)
    ]
    # Re-emit so library callers see them too (the caught list is only our record of them).
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    ordered = {name: metrics[name] for name in params.metrics if name in metrics}
    rows = {
        side: SideRows(
            order,
            labels[side] if labels is not None else None,
            mode_distance if side == "real" else None,
        )
        for side, order in orders.items()
    }
    graph, holdout_graph = graphs if graphs is not None else (None, None)
    return Evaluation(
        metrics=ordered,
        warnings=recorded,
        report=report,
        details=details,
        samples=sample_columns(graph, holdout_graph, rows, tail_fraction=params.tail_fraction),
        samples_computed={"knn": graphs is not None, "modes": labels is not None},
    )
