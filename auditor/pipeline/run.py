"""``run_audit``: the one pipeline, in one process. Load -> embed -> score -> verdict -> persist.

The CLI calls it; the service runs the same stages (:mod:`auditor.pipeline.stages`) split across
workers. Every failure is recorded on the audit row (state ``failed``, machine-readable code, message)
before it propagates, so nothing is silently dropped.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timezone

from sqlalchemy.orm import Session

from auditor.artifacts import ArtifactStore
from auditor.datasets.refs import dataset_scope
from auditor.db import queries
from auditor.errors import AuditorError, BadInputError
from auditor.gates.baselines import require_no_history_baselines, resolve_baselines
from auditor.pipeline.progress import NullProgress, ProgressReporter
from auditor.pipeline.result import AuditResult
from auditor.pipeline.spec import AuditSpec, DatasetRef
from auditor.pipeline.stages import (
    Prepared,
    SideFeatures,
    StageTimings,
    embed_side,
    load_reference,
    load_sides,
    prepare,
    resolve_device,
    score,
)

SessionScope = Callable[[], AbstractContextManager[Session]]


def run_audit(
    spec: AuditSpec,
    *,
    session_scope: SessionScope | None = None,
    progress: ProgressReporter | None = None,
    audit_id: str | None = None,
    store: ArtifactStore | None = None,
) -> AuditResult:
    """Run one audit end to end; with ``session_scope`` it is recorded in the database.

    ``store`` enables the embedding cache: sides already embedded by the same extractor are read back.
    """
    progress = progress or NullProgress()
    audit_id = audit_id or uuid.uuid4().hex
    created_at = datetime.now(timezone.utc)
    prepared = prepare(spec)

    generation = spec.generation
    if session_scope is not None:
        with session_scope() as session:
            if prepared.policy is not None and prepared.policy.baseline_names():
                # The history baselines, resolved before the audit exists (a missing one is bad input).
                baselines = resolve_baselines(
                    session, prepared.policy, project=spec.project, parent_audit_id=spec.parent_audit_id
                )
                spec = spec.model_copy(update={"baselines": baselines})
                prepared = dataclasses.replace(
                    prepared, spec=prepared.spec.model_copy(update={"baselines": baselines})
                )
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
    else:
        require_no_history_baselines(prepared.policy)
    try:
        with dataset_scope():  # downloads are deleted when the audit ends, however it ends
            result = _execute(prepared, progress, audit_id, created_at, generation, store)
    except Exception as exc:
        if session_scope is not None:
            code = exc.code if isinstance(exc, AuditorError) else "internal_error"
            message = exc.message if isinstance(exc, AuditorError) else f"{type(exc).__name__}: {exc}"
            with session_scope() as session:
                queries.fail_audit(session, audit_id, code=code, message=message)
        raise
    if session_scope is not None:
        with session_scope() as session:
            queries.complete_audit(
                session, audit_id, result.document, result.report.to_dict(), result.artifacts
            )
    return result


def _execute(
    prepared: Prepared,
    progress: ProgressReporter,
    audit_id: str,
    created_at: datetime,
    generation: int | None,
    store: ArtifactStore | None,
) -> AuditResult:
    timings = StageTimings()
    start = time.perf_counter()
    loaded = load_sides(prepared.spec, progress, extractor=prepared.extractor)
    timings.add("load_s", time.perf_counter() - start)

    progress.start("embed", len(loaded))
    sides: dict[str, SideFeatures] = {}
    for side in loaded:
        sides[side] = embed_side(prepared.extractor, loaded, side, store=store, progress=progress)
        timings.add("embed_s", sides[side].embed_s)
        progress.advance("embed")
    progress.finish("embed")
    return score(
        prepared,
        loaded,
        sides,
        audit_id=audit_id,
        created_at=created_at,
        generation=generation,
        timings=timings,
        progress=progress,
    )


__all__ = ["AuditSpec", "BadInputError", "DatasetRef", "load_reference", "resolve_device", "run_audit"]
