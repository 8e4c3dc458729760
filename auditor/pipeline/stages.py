"""The audit's stages as separate functions: load, embed (per side, through the cache), score.

``run_audit`` chains them in one process (the CLI); the service runs the embed stage on GPU workers
and the score stage on CPU workers (:mod:`auditor.service.execution`), handing features over through
the artifact store. Both paths call exactly these functions, so they produce the same document.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import torch

from auditor import __version__
from auditor.artifacts import ArtifactStore
from auditor.config import Settings, get_settings
from auditor.datasets.options import DatasetLimits
from auditor.datasets.refs import ResolvedDataset, require_modality, resolve_dataset
from auditor.datasets.skips import SkipReport
from auditor.errors import UnknownNameError
from auditor.extractors import get_extractor
from auditor.extractors.base import FeatureExtractor, LoadedDataset
from auditor.metrics.warnings import DiagnosticsWarning
from auditor.pipeline.evaluate import Evaluation, evaluate
from auditor.pipeline.limits import apply_operator_limits
from auditor.pipeline.progress import NullProgress, ProgressReporter
from auditor.pipeline.result import SCHEMA_VERSION, Artifact, AuditResult, protocol_fingerprint
from auditor.pipeline.spec import AuditSpec, DatasetRef
from auditor.policy import Policy, evaluate_policy, no_policy_verdict, sample_sizes

log = logging.getLogger(__name__)

SIDES = ("real", "synthetic", "holdout")
# Bumped when what an embedding cache entry holds changes meaning.
CACHE_LAYOUT_VERSION = "1"


@dataclass
class Prepared:
    """What an audit needs before any data is read: validated policy, extractor, device."""

    spec: AuditSpec
    policy: Policy | None
    extractor: FeatureExtractor
    device: torch.device


@dataclass
class SideFeatures:
    features: torch.Tensor
    from_cache: bool
    cache_key: str | None
    embed_s: float


@dataclass
class StageTimings:
    values: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.values[name] = self.values.get(name, 0.0) + seconds


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UnknownNameError("--device cuda was requested but no CUDA device is available; use cpu or auto")
    return torch.device(requested)


def prepare(spec: AuditSpec, *, resolve_devices: bool = True, settings: Settings | None = None) -> Prepared:
    """Everything checkable without reading data: bad input fails here, before an audit is queued.

    The prepared spec carries the operator's limits applied (auditor.pipeline.limits): the memory
    budget resolved on the machine that runs it.
    """
    params = apply_operator_limits(spec.params, settings or get_settings())
    spec = spec.model_copy(update={"params": params})
    policy = Policy.from_dict(spec.policy) if spec.policy is not None else None
    if policy is not None:
        policy.check_applicable(
            spec.params.metrics,
            spec.params.bootstrap > 0 or spec.params.spectral_bootstrap > 0,
            has_holdout=spec.holdout is not None,
            has_parent=spec.parent_audit_id is not None,
        )
    # The API validates on a machine that may have no GPU while its workers do: it skips the device.
    device = resolve_device(spec.device) if resolve_devices else torch.device("cpu")
    # Extractors run their network on the audit's device; it is not part of their identity (describe()).
    extractor = get_extractor(spec.extractor, {**spec.extractor_options, "device": str(device)})
    return Prepared(spec=spec, policy=policy, extractor=extractor, device=device)


def sides_of(spec: AuditSpec) -> dict[str, DatasetRef]:
    sides = {"real": spec.real, "synthetic": spec.synthetic}
    if spec.holdout is not None:
        sides["holdout"] = spec.holdout
    return sides


def resolve_reference(ref: DatasetRef, settings: Settings | None = None) -> ResolvedDataset:
    """Check, list and fingerprint one reference under the configured schemes, data roots and limits.

    Its downloads live until the dataset is closed: the caller runs in a ``dataset_scope()``."""
    settings = settings or get_settings()
    return resolve_dataset(
        ref.uri,
        format=ref.format,
        options=ref.options,
        allowed_schemes=settings.remote_scheme_set(),
        data_roots=settings.data_root_paths(),
        download_dir=settings.home / "downloads",
        limits=DatasetLimits.from_settings(settings),
    )


def load_reference(side: str, ref: DatasetRef, settings: Settings | None = None) -> LoadedDataset:
    resolved = resolve_reference(ref, settings)
    return LoadedDataset(
        side=side,
        reference=ref.uri,
        path=resolved.local_path,
        format=resolved.format,
        fingerprint=resolved.fingerprint,
        options=ref.options,
        resolved=resolved,
    )


def load_sides(
    spec: AuditSpec,
    progress: ProgressReporter | None = None,
    *,
    extractor: FeatureExtractor | None = None,
    settings: Settings | None = None,
) -> dict[str, LoadedDataset]:
    """Resolve every side; with ``extractor``, refuse a modality it cannot read before any heavy work."""
    progress = progress or NullProgress()
    sides = sides_of(spec)
    progress.start("load", len(sides))
    loaded = {}
    for side, ref in sides.items():
        loaded[side] = load_reference(side, ref, settings)
        resolved = loaded[side].resolved
        if extractor is not None and resolved is not None:
            require_modality(resolved, accepted_modalities(extractor), extractor.name)
        progress.advance("load")
    progress.finish("load")
    return loaded


def accepted_modalities(extractor: FeatureExtractor) -> set[str]:
    # parquet resolves to "embeddings" or "table" by its columns; the extractor's readers decide the rest.
    return set(getattr(extractor, "accepts", None) or {extractor.modality})


def cache_key(extractor: FeatureExtractor, dataset: LoadedDataset, real: LoadedDataset) -> str | None:
    """The embedding-cache key of one side, or None when the extractor's output is not worth caching.

    Keyed by content (the fingerprint, never the path), the extractor's identity (name, version, weights,
    preprocessing) and the sampling options; an extractor fitted on the real side (``fits_on_real``)
    also keys on the real side's fingerprint, since its output depends on it.
    """
    if not getattr(extractor, "cacheable", False):
        return None
    identity = extractor.describe()
    payload = {
        "layout": CACHE_LAYOUT_VERSION,
        "fingerprint": dataset.fingerprint,
        "format": dataset.format,
        "options": dataset.options,
        "extractor": {k: identity.get(k) for k in ("name", "version", "weights_sha256", "preprocessing")},
        "fitted_on": real.fingerprint if getattr(extractor, "fits_on_real", False) else None,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return f"embeddings/{identity.get('name')}/{digest}"


def embed_side(
    extractor: FeatureExtractor,
    loaded: dict[str, LoadedDataset],
    side: str,
    *,
    store: ArtifactStore | None,
    progress: ProgressReporter | None = None,
) -> SideFeatures:
    """One side's features: from the cache when present, else embedded (and cached when cacheable)."""
    progress = progress or NullProgress()
    start = time.perf_counter()
    key = cache_key(extractor, loaded[side], loaded["real"])
    if key is not None and store is not None:
        cached = store.try_get_entry(key)
        if cached is not None:
            array, meta = cached
            # The samples the embedding pass skipped (corrupt images) are reported as if it ran here.
            restore_loader_skips(loaded[side], meta)
            return SideFeatures(torch.from_numpy(array), True, key, time.perf_counter() - start)
    extractor.fit(loaded["real"])
    features = extractor.embed(loaded[side], progress)
    if key is not None and store is not None:
        array = features.detach().cpu().numpy().astype(np.float32, copy=False)
        store.put_array(key, array, {"side": side, **loader_skips_meta(loaded[side])})
    return SideFeatures(features, False, key, time.perf_counter() - start)


def loader_skips_meta(dataset: LoadedDataset) -> dict[str, Any]:
    """What the embedding pass skipped, for the cache entry's metadata (nothing when it skipped
    nothing or when no loader ran, as for embeddings and tables)."""
    report = dataset.resolved.loader_skips() if dataset.resolved is not None else None
    return {"loader_skips": report.to_dict()} if report is not None and report.seen else {}


def restore_loader_skips(dataset: LoadedDataset, meta: dict[str, Any]) -> None:
    """Put a cache entry's skip report back on the dataset, and enforce ``max_bad_fraction`` on it (for
    an assembled side, the first time the whole side's count is known)."""
    stored = meta.get("loader_skips")
    if stored and dataset.resolved is not None:
        dataset.resolved.record_loader_skips(SkipReport.from_dict(stored))


def shard_count(dataset: LoadedDataset, shard_size: int) -> int:
    """How many embedding tasks a side is split into: images and texts beyond ``shard_size`` samples."""
    resolved = dataset.resolved
    if resolved is None or resolved.modality not in ("image", "text") or not resolved.n_samples:
        return 1
    return max(1, -(-resolved.n_samples // shard_size))


def shard_key(key: str, index: int, count: int) -> str:
    return f"{key}/shard-{index:05d}-of-{count:05d}"


def embed_shard(
    extractor: FeatureExtractor,
    loaded: dict[str, LoadedDataset],
    side: str,
    index: int,
    count: int,
    *,
    store: ArtifactStore,
    progress: ProgressReporter | None = None,
) -> float:
    """Embed shard ``index`` of ``count`` of one side into the store; returns the seconds it took.

    Shards are contiguous slices in sample order, so concatenating them in index order gives exactly
    the rows a single pass would (see :func:`assemble_shards`).
    """
    start = time.perf_counter()
    key = cache_key(extractor, loaded[side], loaded["real"])
    if key is None:
        raise ValueError(f"extractor {extractor.name} does not cache its output; nothing to shard")
    # A single shard is the side itself: written straight to its cache entry.
    target = key if count == 1 else shard_key(key, index, count)
    if store.has_array(key) or store.has_array(target):
        return 0.0  # already done (a retried task, or the whole side was cached meanwhile)
    dataset = loaded[side]
    if count > 1 and dataset.resolved is not None:
        dataset = dataclasses.replace(dataset, resolved=dataset.resolved.shard(index, count))
    extractor.fit(loaded["real"])
    features = extractor.embed(dataset, progress or NullProgress())
    array = features.detach().cpu().numpy().astype(np.float32, copy=False)
    meta = {"side": side, "shard": index, "of": count, **loader_skips_meta(dataset)}
    store.put_array(target, array, meta)
    return time.perf_counter() - start


def assemble_shards(store: ArtifactStore, key: str, count: int) -> None:
    """Concatenate a side's shards into its cache entry (so later audits hit the cache whole), with
    their skip reports merged into one for the side."""
    if store.has_array(key):
        return
    entries = [store.get_entry(shard_key(key, index, count)) for index in range(count)]
    parts = [array for array, _ in entries]
    meta: dict[str, Any] = {"assembled_from": count}
    reports = [SkipReport.from_dict(m["loader_skips"]) for _, m in entries if "loader_skips" in m]
    if reports:
        meta["loader_skips"] = functools.reduce(SkipReport.merge, reports).to_dict()
    store.put_array(key, np.concatenate(parts, axis=0), meta)


def _side_doc(dataset: LoadedDataset, side: SideFeatures) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "reference": dataset.reference,
        "format": dataset.format,
        "fingerprint": dataset.fingerprint,
        "n": int(side.features.shape[0]),
        "dim": int(side.features.shape[1]),
        "from_cache": side.from_cache,
    }
    if dataset.resolved is not None:
        described = dataset.resolved.describe()
        for name in ("modality", "scheme", "content_fingerprint", "n_bytes", "skipped", "has_labels"):
            doc[name] = described.get(name)
    return doc


def sample_keys(dataset: LoadedDataset, n_rows: int) -> list[str] | None:
    """The key of each of the ``n_rows`` feature rows of a side (image keys, ``line N``, row numbers),
    or None when the dataset cannot say which sample a row is.

    None happens for a table or array file read with ``max_samples`` whose row count is not known
    up front (csv, npz, pt), and for images skipped while decoding when more were skipped than the
    skip report names (5 per reason).
    """
    resolved = dataset.resolved
    if resolved is None:
        return [str(i) for i in range(n_rows)]
    keys = resolved.sample_keys()
    if len(keys) == n_rows:
        return keys
    if not keys and resolved.modality in ("embeddings", "table") and resolved.options.max_samples is None:
        return [str(i) for i in range(n_rows)]  # read whole: a row's number is its key
    skipped = resolved.loader_skips()
    if skipped is not None and sum(len(v) for v in skipped.examples.values()) == skipped.skipped:
        named = {key for examples in skipped.examples.values() for key in examples}
        kept = [key for key in keys if key not in named]
        if len(kept) == n_rows:
            return kept
    return None


def sample_labels(dataset: LoadedDataset, keys: list[str] | None) -> list[str | None] | None:
    """The label of each feature row (by its key), or None when the dataset has no labels or its rows
    cannot be named."""
    resolved = dataset.resolved
    labels = resolved.labels() if resolved is not None and keys is not None else None
    if resolved is None or keys is None or labels is None:
        return None
    named = resolved.sample_keys()
    if len(named) != len(labels):
        return None
    by_key = dict(zip(named, labels, strict=True))
    return [by_key.get(key) for key in keys]


def _sample_tables(
    evaluation: Evaluation, keys: dict[str, list[str] | None], settings: Settings
) -> tuple[dict[str, Any], list[Artifact], dict[str, Any]]:
    """The per-sample tables, what is stored of them and the document's ``diagnostics`` entry.

    Over ``AUDITOR_MAX_ARTIFACT_MB`` nothing is stored (a :class:`DiagnosticsWarning` says so): the
    metrics are the audit's result, the evidence is worth less than failing the audit.
    """
    from auditor import samples

    tables = samples.build_tables(evaluation.samples, keys)
    computed = dict(evaluation.samples_computed)
    info: dict[str, Any] = {
        "rows": {side: table.num_rows for side, table in tables.items()},
        "computed": computed,
        "artifacts": [],
        "bytes": 0,
        "omitted": None,
    }
    if not any(computed.values()):
        info["omitted"] = "no k-NN or mode metric was requested"
        return tables, [], info
    artifacts = samples.encode_artifacts(tables)
    size = sum(artifact.size for artifact in artifacts)
    info["bytes"] = size
    limit = settings.max_artifact_mb << 20
    if size > limit:
        info["omitted"] = (
            f"the per-sample tables take {size:,} bytes ({size / 2**20:.2f} MiB), over "
            f"AUDITOR_MAX_ARTIFACT_MB={settings.max_artifact_mb}"
        )
        warnings.warn(
            f"no per-sample diagnostics stored: {info['omitted']}", DiagnosticsWarning, stacklevel=3
        )
        evaluation.warnings.append({"category": DiagnosticsWarning.__name__, "message": info["omitted"]})
        return tables, [], info
    info["artifacts"] = [artifact.name for artifact in artifacts]
    return tables, artifacts, info


@dataclass
class ReportEvidence:
    """What the score stage adds for the report: previews (``items``, and the ``artifact`` storing
    them, None when none are made) and the document's ``diagnostics.previews`` entry."""

    items: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    artifact: Artifact | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _table_frames(prepared: Prepared, loaded: dict[str, LoadedDataset]) -> dict[str, Any]:
    """The table sides as the audit read them (for the column findings and the rows' previews)."""
    from auditor.extractors.tabular import TABLE_FORMATS, read_frame

    drop = list(getattr(prepared.extractor, "drop_columns", None) or [])
    return {
        side: read_frame(dataset, drop)
        for side, dataset in loaded.items()
        if side in ("real", "synthetic")
        and dataset.modality == "table"
        and dataset.format in TABLE_FORMATS
        and dataset.path is not None
    }


def _no_previews(reason: str) -> ReportEvidence:
    return ReportEvidence(info={"count": 0, "failed": 0, "capped": 0, "omitted": reason})


def _report_evidence(
    prepared: Prepared,
    loaded: dict[str, LoadedDataset],
    evaluation: Evaluation,
    tables: dict[str, Any],
    keys: dict[str, list[str] | None],
    settings: Settings,
) -> ReportEvidence:
    """The galleries and column findings (into the report data) and the galleries' previews.

    Previews are real data: made only when neither the spec nor the operator switched them off, and a
    failure to make them is recorded by its exception type alone (no key, path or content), never
    failing the audit.
    """
    from auditor.pipeline import previews as pv
    from auditor.pipeline.galleries import build_galleries, gallery_refs
    from auditor.pipeline.table_drift import table_drift

    report = evaluation.report
    # The latent map's points by sample key (its indices are input rows), for previews on hover.
    for side, indices, target in (
        ("real", report.projection_real_index, report.projection_real_key),
        ("synthetic", report.projection_synthetic_index, report.projection_synthetic_key),
    ):
        side_keys = keys.get(side)
        if side_keys is not None:
            target[:] = [side_keys[i] if 0 <= i < len(side_keys) else None for i in indices]
    frames = _table_frames(prepared, loaded)
    if "real" in frames and "synthetic" in frames:
        try:
            report.table_drift = table_drift(frames["real"], frames["synthetic"])
        except Exception as exc:  # a report section, not the result: the audit stands without it
            log.warning("column findings not made: %s", type(exc).__name__)
    if not any(evaluation.samples_computed.values()):
        return _no_previews("no k-NN or mode metric was requested")
    report.galleries = build_galleries(
        tables,
        tau=evaluation.details.get("copy_threshold_tau"),
        mode_real_share=report.mode_real_share,
        mode_synthetic_share=report.mode_synthetic_share,
        real_labels=sample_labels(loaded["real"], keys["real"]),
    )
    reason = pv.switched_off(prepared.spec.previews, settings.previews)
    if reason is not None:
        return _no_previews(reason)
    try:
        made = pv.make_previews(loaded, gallery_refs(report.galleries), keys, frames=frames)
    except Exception as exc:  # evidence, not the result: the audit stands without it
        log.warning("previews not made: %s", type(exc).__name__)
        return _no_previews(f"previews could not be made ({type(exc).__name__})")
    info: dict[str, Any] = {
        "count": made.count,
        "failed": made.failed,
        "capped": made.capped,
        "omitted": None,
    }
    if not made.count:
        info["omitted"] = (
            "embeddings show nothing beyond their keys" if made.key_only else "no sample could be previewed"
        )
        return ReportEvidence(info=info)
    return ReportEvidence(items=made.items, artifact=pv.encode_previews(made), info=info)


def _policy_sample_sizes(
    features: dict[str, torch.Tensor], details: dict[str, Any], tail_fraction: float
) -> dict[str, dict[str, int]]:
    """The counts behind the share metrics, for the noise floor of ``beyond: noise`` rules."""
    counts = {side: {"n": int(x.shape[0])} for side, x in features.items()}
    document = {**counts, "details": details, "params": {"tail_fraction": tail_fraction}}
    sizes = {"audit": sample_sizes(document)}
    if "holdout" in counts:
        sizes["holdout"] = sample_sizes(document, side="holdout")
    return sizes


def score(
    prepared: Prepared,
    loaded: dict[str, LoadedDataset],
    sides: dict[str, SideFeatures],
    *,
    audit_id: str,
    created_at: datetime,
    generation: int | None,
    timings: StageTimings,
    progress: ProgressReporter | None = None,
    settings: Settings | None = None,
) -> AuditResult:
    """Metrics, verdict, the result document and the per-sample tables from each side's features."""
    progress = progress or NullProgress()
    spec = prepared.spec
    features = {side: value.features.to(prepared.device) for side, value in sides.items()}
    start = time.perf_counter()
    evaluation = evaluate(
        features["real"], features["synthetic"], features.get("holdout"), spec.params, progress=progress
    )
    settings = settings or get_settings()
    keys = {side: sample_keys(loaded[side], int(x.shape[0])) for side, x in features.items()}
    tables, artifacts, diagnostics = _sample_tables(evaluation, keys, settings)
    previews = _report_evidence(prepared, loaded, evaluation, tables, keys, settings)
    if previews.artifact is not None:
        stored = sum(artifact.size for artifact in artifacts) + previews.artifact.size
        if stored > settings.max_artifact_mb << 20:
            # One bound on everything stored with an audit; the previews go first.
            previews.info["omitted"] = (
                f"not stored: with them the audit's files take {stored:,} bytes, over "
                f"AUDITOR_MAX_ARTIFACT_MB={settings.max_artifact_mb}"
            )
        else:
            artifacts.append(previews.artifact)
    diagnostics["previews"] = previews.info
    timings.add("score_s", time.perf_counter() - start)

    metrics_doc = {name: value.to_dict() for name, value in evaluation.metrics.items()}
    policy = prepared.policy
    verdict = (
        evaluate_policy(
            policy,
            metrics_doc,
            spec.baselines,
            sizes=_policy_sample_sizes(features, evaluation.details, spec.params.tail_fraction),
            confidence=spec.params.confidence,
        )
        if policy is not None
        else no_policy_verdict()
    )
    extractor_doc = prepared.extractor.describe()
    params_doc = spec.params.model_dump(mode="json")
    protocol = protocol_fingerprint(
        extractor=extractor_doc,
        params=params_doc,
        n_real=int(features["real"].shape[0]),
        n_synthetic=int(features["synthetic"].shape[0]),
        n_holdout=int(features["holdout"].shape[0]) if "holdout" in features else None,
    )
    timings.values["total_s"] = sum(v for k, v in timings.values.items() if k != "total_s")
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "auditor_version": __version__,
        "audit_id": audit_id,
        "project": spec.project,
        "created_at": created_at.isoformat(),
        "real": _side_doc(loaded["real"], sides["real"]),
        "synthetic": _side_doc(loaded["synthetic"], sides["synthetic"]),
        "holdout": _side_doc(loaded["holdout"], sides["holdout"]) if "holdout" in sides else None,
        "extractor": extractor_doc,
        "params": params_doc,
        "protocol": protocol,
        "lineage": {"parent_audit_id": spec.parent_audit_id, "generation": generation},
        "tags": list(spec.tags),
        "metrics": metrics_doc,
        "warnings": evaluation.warnings,
        "details": evaluation.details,
        "timings": {k: round(v, 4) for k, v in timings.values.items()},
        "device": str(prepared.device),
        "verdict": verdict,
        "diagnostics": diagnostics,
    }
    return AuditResult(
        document=document,
        report=evaluation.report,
        samples=tables,
        artifacts=artifacts,
        previews=previews.items,
    )
