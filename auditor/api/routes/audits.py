"""Audits: submit (202, idempotent), get, list (filters, cursor), cancel, report."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import HTMLResponse

from auditor.api.deps import ContextDep, PrincipalDep, SessionDep, require_project_access
from auditor.api.schemas import AuditCreate, AuditPublic, AuditsPage, ErrorDetail
from auditor.db import lifecycle, queries
from auditor.db.models import AUDIT_STATES, Audit
from auditor.errors import BadInputError, ConflictError
from auditor.service.submit import submit_audit

router = APIRouter(prefix="/v1/audits", tags=["audits"])
MAX_PAGE = 200


def audit_public(
    audit: Audit,
    *,
    with_result: bool = True,
    events: list[dict[str, Any]] | None = None,
    project: str | None = None,
) -> AuditPublic:
    error = (
        ErrorDetail(code=audit.error_code, message=audit.error_message or "")
        if audit.error_code is not None
        else None
    )
    return AuditPublic(
        id=audit.id,
        project=project if project is not None else audit.project.name,
        state=audit.state,
        extractor=audit.extractor,
        created_at=audit.created_at,
        started_at=audit.started_at,
        finished_at=audit.finished_at,
        duration_s=audit.duration_s,
        heartbeat_at=audit.heartbeat_at,
        attempts=audit.attempts,
        cancel_requested=audit.cancel_requested,
        progress=dict(audit.progress or {}),
        parent_audit_id=audit.parent_audit_id,
        generation=audit.generation,
        tags=list(audit.tags or []),
        passed=audit.passed,
        error=error,
        result=audit.result if with_result else None,
        events=events or [],
    )


@router.post("", status_code=202, response_model=AuditPublic)
def create_audit(
    body: AuditCreate,
    context: ContextDep,
    principal: PrincipalDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> AuditPublic:
    """Queue an audit and answer at once; poll ``GET /v1/audits/{id}`` (or ``auditor wait``)."""
    audit_id, created = submit_audit(context, principal, body, idempotency_key)
    response.headers["Location"] = f"/v1/audits/{audit_id}"
    if created is not None:
        return audit_public(created, with_result=False, project=body.project)
    response.headers["Idempotent-Replayed"] = "true"
    with context.session() as session:  # a replay only: a new submit answers from the row it wrote
        return audit_public(queries.get_audit(session, audit_id), with_result=False)


@router.get("/{audit_id}", response_model=AuditPublic)
def get_audit(audit_id: str, session: SessionDep, principal: PrincipalDep) -> AuditPublic:
    audit = queries.get_audit(session, audit_id)
    require_project_access(principal, audit.project.name)
    events = [
        {"state": e.state, "at": e.at.isoformat(), "message": e.message}
        for e in queries.audit_events(session, audit.id)
    ]
    return audit_public(audit, events=events)


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, audit_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), audit_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadInputError(f"invalid cursor {cursor!r}; pass next_cursor from the previous page") from exc


def _encode_cursor(audit: Audit) -> str:
    return base64.urlsafe_b64encode(f"{audit.created_at.isoformat()}|{audit.id}".encode()).decode()


@router.get("", response_model=AuditsPage)
def list_audits(
    session: SessionDep,
    principal: PrincipalDep,
    project: str | None = None,
    state: Annotated[str | None, Query(pattern="^(" + "|".join(AUDIT_STATES) + ")$")] = None,
    tag: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: str | None = None,
) -> AuditsPage:
    """Audits newest first; a project key sees only its project's audits."""
    if project is not None:
        require_project_access(principal, project)
        projects: tuple[str, ...] | None = (project,)
    else:
        projects = None if principal.is_admin else ((principal.project,) if principal.project else ())
    for moment in (created_after, created_before):
        if moment is not None and moment.tzinfo is None:
            raise BadInputError("created_after / created_before need a timezone, e.g. 2026-11-23T00:00:00Z")
    filters = queries.AuditFilter(
        projects=projects, state=state, tag=tag, created_after=created_after, created_before=created_before
    )
    after = _decode_cursor(cursor) if cursor else None
    rows = queries.page_audits(session, filters, limit=limit + 1, after=after)
    page, more = rows[:limit], len(rows) > limit
    return AuditsPage(
        items=[audit_public(a, with_result=False) for a in page],
        next_cursor=_encode_cursor(page[-1]) if more and page else None,
    )


@router.post("/{audit_id}/cancel", status_code=202, response_model=AuditPublic)
def cancel_audit(audit_id: str, session: SessionDep, principal: PrincipalDep) -> AuditPublic:
    """Cancel: a queued audit at once; a running one stops at its next step (state then ``cancelled``)."""
    audit = queries.get_audit(session, audit_id)
    require_project_access(principal, audit.project.name)
    lifecycle.request_cancel(session, audit.id)
    session.flush()
    return audit_public(queries.get_audit(session, audit.id), with_result=False)


@router.get("/{audit_id}/report", response_class=HTMLResponse)
def get_report(audit_id: str, session: SessionDep, principal: PrincipalDep) -> HTMLResponse:
    """The self-contained HTML report of a succeeded audit (with the trend of its project)."""
    from auditor.report.service import render_audit_report

    audit = queries.get_audit(session, audit_id)
    require_project_access(principal, audit.project.name)
    if audit.state != "succeeded" or audit.result is None:
        raise ConflictError(
            f"audit {audit.id} is {audit.state}; a report exists once it has succeeded",
            details={"state": audit.state},
        )
    return HTMLResponse(render_audit_report(session, audit))
