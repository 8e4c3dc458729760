"""Waivers in SQL: create, list (the history), revoke, and the ones in force for an audit."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.orm import Session

from auditor.db.base import utcnow
from auditor.db.models import Audit, Project, Waiver
from auditor.errors import BadInputError, NotFoundError
from auditor.gates.waivers import apply_waivers
from auditor.metrics import METRICS
from auditor.policy import did_you_mean

MAX_WAIVER_DAYS = 365


def _project_id(session: Session, project: str) -> int:
    project_id = session.scalar(sa.select(Project.id).where(Project.name == project))
    if project_id is None:
        raise NotFoundError(f"project {project!r} not found", details={"project": project})
    return project_id


def in_force(
    session: Session, project_id: int, audit_id: str | None, at: datetime | None = None
) -> list[Waiver]:
    """The project's waivers and the audit's own, neither revoked nor expired at ``at`` (default: now)."""
    at = at or utcnow()
    scope = (
        Waiver.audit_id.is_(None)
        if audit_id is None
        else sa.or_(Waiver.audit_id.is_(None), Waiver.audit_id == audit_id)
    )
    query = (
        sa.select(Waiver)
        .where(Waiver.project_id == project_id, Waiver.revoked_at.is_(None), Waiver.expires_at > at, scope)
        .order_by(Waiver.created_at, Waiver.id)
    )
    return list(session.scalars(query))


def reapply(session: Session, audit: Audit) -> None:
    """Re-judge a finished audit's stored verdict with the waivers in force now."""
    if not audit.result:
        return
    document = dict(audit.result)
    document["verdict"] = apply_waivers(
        document.get("verdict") or {}, in_force(session, audit.project_id, audit.id)
    )
    audit.result = document
    audit.passed = document["verdict"].get("passed")


def create_waiver(
    session: Session,
    *,
    project: str,
    metric: str,
    reason: str,
    created_by: str,
    days: float,
    audit_id: str | None = None,
) -> Waiver:
    if metric not in METRICS:
        raise BadInputError(
            f"unknown metric {metric!r}{did_you_mean(metric, METRICS)}", details={"metric": metric}
        )
    if not reason.strip():
        raise BadInputError("a waiver needs a reason")
    if not 0 < days <= MAX_WAIVER_DAYS:
        raise BadInputError(f"a waiver lasts more than 0 and at most {MAX_WAIVER_DAYS} days, not {days}")
    project_id = _project_id(session, project)
    audit = None
    if audit_id is not None:
        audit = session.get(Audit, audit_id)
        if audit is None or audit.project_id != project_id:
            raise NotFoundError(
                f"audit {audit_id} not found in project {project!r}", details={"audit_id": audit_id}
            )
    waiver = Waiver(
        id=uuid.uuid4().hex,
        project_id=project_id,
        audit_id=audit_id,
        metric=metric,
        reason=reason.strip(),
        created_by=created_by,
        created_at=utcnow(),
        expires_at=datetime.now(timezone.utc) + timedelta(days=days),
    )
    session.add(waiver)
    session.flush()
    if audit is not None:
        reapply(session, audit)
    return waiver


def list_waivers(session: Session, project: str, *, include_inactive: bool = True) -> list[Waiver]:
    """The project's waivers, newest first: every version (revoked and expired too) unless asked not."""
    project_id = _project_id(session, project)
    query = sa.select(Waiver).where(Waiver.project_id == project_id)
    if not include_inactive:
        query = query.where(Waiver.revoked_at.is_(None), Waiver.expires_at > utcnow())
    return list(session.scalars(query.order_by(Waiver.created_at.desc(), Waiver.id.desc())))


def revoke_waiver(session: Session, project: str, waiver_id: str, revoked_by: str) -> Waiver:
    project_id = _project_id(session, project)
    waiver = session.get(Waiver, waiver_id)
    if waiver is None or waiver.project_id != project_id:
        raise NotFoundError(
            f"waiver {waiver_id} not found in project {project!r}", details={"waiver_id": waiver_id}
        )
    if waiver.revoked_at is None:
        waiver.revoked_at, waiver.revoked_by = utcnow(), revoked_by
        session.flush()
        if waiver.audit_id is not None:
            audit = session.get(Audit, waiver.audit_id)
            if audit is not None:
                reapply(session, audit)
    return waiver
