"""Every query the auditor runs. Functions take a Session; the caller owns the transaction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from auditor.db.models import Audit, Dataset, MetricValue, Project, utcnow
from auditor.errors import BadInputError, NotFoundError

MIN_PREFIX = 6


@dataclass(frozen=True)
class TrendPoint:
    audit_id: str
    created_at: datetime
    generation: int | None
    value: float | None
    ci_low: float | None
    ci_high: float | None
    baseline: float | None
    protocol_fingerprint: str | None


def get_or_create_project(session: Session, name: str) -> Project:
    project = session.scalars(select(Project).where(Project.name == name)).one_or_none()
    if project is None:
        project = Project(name=name, created_at=utcnow())
        session.add(project)
        session.flush()
    return project


def get_project(session: Session, name: str) -> Project:
    project = session.scalars(select(Project).where(Project.name == name)).one_or_none()
    if project is None:
        raise NotFoundError(f"no project named {name!r}")
    return project


def create_audit(
    session: Session,
    *,
    audit_id: str,
    project: str,
    spec: dict[str, Any],
    extractor: str,
    parent_audit_id: str | None = None,
    generation: int | None = None,
    tags: list[str] | None = None,
    state: str = "running",
) -> Audit:
    """A new audit row; lineage is checked (the parent must exist) and generation defaults to parent's + 1."""
    if parent_audit_id is not None:
        parent = session.get(Audit, parent_audit_id)
        if parent is None:
            raise NotFoundError(
                f"parent audit {parent_audit_id!r} does not exist",
                details={"parent_audit_id": parent_audit_id},
            )
        if generation is None:
            generation = (parent.generation + 1) if parent.generation is not None else 1
    now = utcnow()
    audit = Audit(
        id=audit_id,
        project_id=get_or_create_project(session, project).id,
        state=state,
        extractor=extractor,
        spec=spec,
        params=spec.get("params", {}),
        parent_audit_id=parent_audit_id,
        generation=generation,
        tags=list(tags or []),
        created_at=now,
        started_at=now if state == "running" else None,
    )
    session.add(audit)
    session.flush()
    return audit


def record_dataset(session: Session, project_id: int, side: dict[str, Any]) -> Dataset:
    """The dataset row for this reference and content, reused when audited again."""
    existing = session.scalars(
        select(Dataset).where(
            Dataset.project_id == project_id,
            Dataset.fingerprint == side["fingerprint"],
            Dataset.reference == side["reference"],
        )
    ).one_or_none()
    if existing is not None:
        return existing
    dataset = Dataset(
        project_id=project_id,
        reference=side["reference"],
        fingerprint=side["fingerprint"],
        format=side["format"],
        n_samples=side["n"],
        dim=side["dim"],
        created_at=utcnow(),
    )
    session.add(dataset)
    session.flush()
    return dataset


def _finite(value: Any) -> float | None:
    # JSON and some databases cannot hold NaN/inf; a non-finite metric is stored as NULL.
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def complete_audit(
    session: Session, audit_id: str, document: dict[str, Any], report_data: dict[str, Any] | None = None
) -> Audit:
    audit = session.get(Audit, audit_id)
    if audit is None:
        raise NotFoundError(f"audit {audit_id!r} does not exist")
    audit.real_dataset_id = record_dataset(session, audit.project_id, document["real"]).id
    audit.synthetic_dataset_id = record_dataset(session, audit.project_id, document["synthetic"]).id
    if document.get("holdout"):
        audit.holdout_dataset_id = record_dataset(session, audit.project_id, document["holdout"]).id
    for name, metric in document["metrics"].items():
        session.add(
            MetricValue(
                audit_id=audit_id,
                metric=name,
                value=_finite(metric.get("value")),
                ci_low=_finite(metric.get("ci_low")),
                ci_high=_finite(metric.get("ci_high")),
                baseline=_finite(metric.get("baseline")),
            )
        )
    audit.state = "succeeded"
    audit.passed = document["verdict"]["passed"]
    audit.protocol_fingerprint = document["protocol"]["fingerprint"]
    audit.finished_at = utcnow()
    audit.duration_s = document.get("timings", {}).get("total_s")
    audit.result = document
    audit.report_data = report_data
    session.flush()
    return audit


def fail_audit(session: Session, audit_id: str, *, code: str, message: str) -> Audit:
    audit = session.get(Audit, audit_id)
    if audit is None:
        raise NotFoundError(f"audit {audit_id!r} does not exist")
    audit.state = "failed"
    audit.error_code = code
    audit.error_message = message
    audit.finished_at = utcnow()
    if audit.started_at is not None:
        started = audit.started_at
        audit.duration_s = (audit.finished_at - started).total_seconds() if started.tzinfo else None
    session.flush()
    return audit


def get_audit(session: Session, audit_id: str) -> Audit:
    """By full id or a unique prefix of at least six characters."""
    audit = session.scalars(
        select(Audit).options(joinedload(Audit.project)).where(Audit.id == audit_id)
    ).first()
    if audit is not None:
        return audit
    if len(audit_id) < MIN_PREFIX:
        raise NotFoundError(f"no audit {audit_id!r} (prefixes need at least {MIN_PREFIX} characters)")
    matches = session.scalars(
        select(Audit)
        .options(joinedload(Audit.project))
        .where(Audit.id.startswith(audit_id, autoescape=True))
        .limit(2)
    ).all()
    if not matches:
        raise NotFoundError(f"no audit matches {audit_id!r}")
    if len(matches) > 1:
        raise BadInputError(f"audit id prefix {audit_id!r} is ambiguous; give more characters")
    return matches[0]


def list_audits(session: Session, *, project: str | None = None, limit: int = 50) -> list[Audit]:
    query = (
        select(Audit).options(joinedload(Audit.project)).order_by(Audit.created_at.desc(), Audit.id.desc())
    )
    if project is not None:
        query = query.join(Project, Audit.project_id == Project.id).where(Project.name == project)
    return list(session.scalars(query.limit(limit)).all())


def audit_metrics(session: Session, audit_id: str) -> dict[str, MetricValue]:
    rows = session.scalars(
        select(MetricValue).where(MetricValue.audit_id == audit_id).order_by(MetricValue.id)
    )
    return {row.metric: row for row in rows}


def metric_trend(
    session: Session, *, project: str, metric: str, protocol_fingerprint: str | None = None
) -> list[TrendPoint]:
    """The series of one metric over a project's succeeded audits, by generation then time.

    Every point carries its protocol fingerprint; pass ``protocol_fingerprint`` to keep one series.
    """
    query = (
        select(Audit, MetricValue)
        .join(MetricValue, MetricValue.audit_id == Audit.id)
        .join(Project, Project.id == Audit.project_id)
        .where(Project.name == project, MetricValue.metric == metric, Audit.state == "succeeded")
        .order_by(Audit.generation.is_(None), Audit.generation, Audit.created_at, Audit.id)
    )
    if protocol_fingerprint is not None:
        query = query.where(Audit.protocol_fingerprint == protocol_fingerprint)
    return [
        TrendPoint(
            audit_id=audit.id,
            created_at=audit.created_at,
            generation=audit.generation,
            value=row.value,
            ci_low=row.ci_low,
            ci_high=row.ci_high,
            baseline=row.baseline,
            protocol_fingerprint=audit.protocol_fingerprint,
        )
        for audit, row in session.execute(query).all()
    ]


def trend_protocols(session: Session, *, project: str, metric: str) -> list[str]:
    return sorted(
        {
            p.protocol_fingerprint
            for p in metric_trend(session, project=project, metric=metric)
            if p.protocol_fingerprint
        }
    )
