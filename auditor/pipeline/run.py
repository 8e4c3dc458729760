"""``run_audit``: the one pipeline. Load -> embed -> score -> verdict -> persist.

The CLI calls it in-process today; the workers will call the same stages from tasks. Every failure is
recorded on the audit row (state ``failed``, machine-readable code, message) before it propagates, so
nothing is silently dropped.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any

import torch
from sqlalchemy.orm import Session

from auditor import __version__
from auditor.datasets.fingerprint import file_fingerprint
from auditor.datasets.refs import detect_format, resolve_local_path
from auditor.db import queries
from auditor.errors import AuditorError, BadInputError, UnknownNameError
from auditor.extractors import get_extractor
from auditor.extractors.base import LoadedDataset
from auditor.pipeline.evaluate import evaluate
from auditor.pipeline.progress import NullProgress, ProgressReporter
from auditor.pipeline.result import SCHEMA_VERSION, AuditResult, protocol_fingerprint
from auditor.pipeline.spec import AuditSpec, DatasetRef
from auditor.policy import Policy, evaluate_policy, no_policy_verdict

SessionScope = Callable[[], AbstractContextManager[Session]]


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UnknownNameError("--device cuda was requested but no CUDA device is available; use cpu or auto")
    return torch.device(requested)


def load_reference(side: str, ref: DatasetRef) -> LoadedDataset:
    path = resolve_local_path(ref.uri)
    fmt = detect_format(path, ref.format)
    return LoadedDataset(
        side=side,
        reference=ref.uri,
        path=path,
        format=fmt,
        fingerprint=file_fingerprint(path),
        options=ref.options,
    )


def _side_doc(dataset: LoadedDataset, features: torch.Tensor) -> dict[str, Any]:
    return {
        "reference": dataset.reference,
        "format": dataset.format,
        "fingerprint": dataset.fingerprint,
        "n": int(features.shape[0]),
        "dim": int(features.shape[1]),
    }


def run_audit(
    spec: AuditSpec,
    *,
    session_scope: SessionScope | None = None,
    progress: ProgressReporter | None = None,
    audit_id: str | None = None,
) -> AuditResult:
    """Run one audit end to end; with ``session_scope`` it is recorded in the database."""
    progress = progress or NullProgress()
    audit_id = audit_id or uuid.uuid4().hex
    created_at = datetime.now(timezone.utc)
    policy = Policy.from_dict(spec.policy) if spec.policy is not None else None
    if policy is not None:
        policy.check_applicable(
            spec.params.metrics, spec.params.bootstrap > 0 or spec.params.spectral_bootstrap > 0
        )
    extractor = get_extractor(spec.extractor, spec.extractor_options)
    device = resolve_device(spec.device)

    generation = spec.generation
    if session_scope is not None:
        with session_scope() as session:
            row = queries.create_audit(
                session,
                audit_id=audit_id,
                project=spec.project,
                spec=spec.model_dump(mode="json"),
                extractor=spec.extractor,
                parent_audit_id=spec.parent_audit_id,
                generation=spec.generation,
                tags=spec.tags,
            )
            generation = row.generation
    try:
        result = _execute(spec, extractor, device, policy, progress, audit_id, created_at, generation)
    except Exception as exc:
        if session_scope is not None:
            code = exc.code if isinstance(exc, AuditorError) else "internal_error"
            message = exc.message if isinstance(exc, AuditorError) else f"{type(exc).__name__}: {exc}"
            with session_scope() as session:
                queries.fail_audit(session, audit_id, code=code, message=message)
        raise
    if session_scope is not None:
        with session_scope() as session:
            queries.complete_audit(session, audit_id, result.document, dataclasses.asdict(result.report))
    return result


def _execute(
    spec: AuditSpec,
    extractor: Any,
    device: torch.device,
    policy: Policy | None,
    progress: ProgressReporter,
    audit_id: str,
    created_at: datetime,
    generation: int | None,
) -> AuditResult:
    timings: dict[str, float] = {}
    start = time.perf_counter()
    sides = {"real": spec.real, "synthetic": spec.synthetic}
    if spec.holdout is not None:
        sides["holdout"] = spec.holdout
    progress.start("load", len(sides))
    loaded = {}
    for side, ref in sides.items():
        loaded[side] = load_reference(side, ref)
        progress.advance("load")
    progress.finish("load")
    timings["load_s"] = time.perf_counter() - start

    t = time.perf_counter()
    progress.start("embed", len(loaded))
    extractor.fit(loaded["real"])
    features: dict[str, torch.Tensor] = {}
    for side, dataset in loaded.items():
        features[side] = extractor.embed(dataset, progress).to(device)
        progress.advance("embed")
    progress.finish("embed")
    timings["embed_s"] = time.perf_counter() - t

    t = time.perf_counter()
    evaluation = evaluate(
        features["real"], features["synthetic"], features.get("holdout"), spec.params, progress=progress
    )
    timings["score_s"] = time.perf_counter() - t

    metrics_doc = {name: value.to_dict() for name, value in evaluation.metrics.items()}
    verdict = evaluate_policy(policy, metrics_doc) if policy is not None else no_policy_verdict()
    extractor_doc = extractor.describe()
    params_doc = spec.params.model_dump(mode="json")
    protocol = protocol_fingerprint(
        extractor=extractor_doc,
        params=params_doc,
        n_real=int(features["real"].shape[0]),
        n_synthetic=int(features["synthetic"].shape[0]),
        n_holdout=int(features["holdout"].shape[0]) if "holdout" in features else None,
    )
    timings["total_s"] = time.perf_counter() - start
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "auditor_version": __version__,
        "audit_id": audit_id,
        "project": spec.project,
        "created_at": created_at.isoformat(),
        "real": _side_doc(loaded["real"], features["real"]),
        "synthetic": _side_doc(loaded["synthetic"], features["synthetic"]),
        "holdout": _side_doc(loaded["holdout"], features["holdout"]) if "holdout" in loaded else None,
        "extractor": extractor_doc,
        "params": params_doc,
        "protocol": protocol,
        "lineage": {"parent_audit_id": spec.parent_audit_id, "generation": generation},
        "tags": list(spec.tags),
        "metrics": metrics_doc,
        "warnings": evaluation.warnings,
        "details": evaluation.details,
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "device": str(device),
        "verdict": verdict,
    }
    return AuditResult(document=document, report=evaluation.report)


__all__ = ["AuditSpec", "BadInputError", "DatasetRef", "load_reference", "resolve_device", "run_audit"]
