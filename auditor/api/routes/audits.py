"""Audits: submit (202, idempotent), get, list (filters, cursor), cancel, report."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import HTMLResponse

from auditor.api.deps import ContextDep, PrincipalDep, SessionDep, require_project_access
from auditor.api.schemas import (
    AUDIT_ID_OR_PREFIX_PATTERN,
    CURSOR_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    NAME_MAX,
    NAME_PATTERN,
    TEXT_PATTERN,
    V1_ERRORS,
    AuditCreate,
    AuditPublic,
    AuditsPage,
    DateTimeQuery,
    ErrorDetail,
    error_responses,
)
from auditor.db import lifecycle, queries
from auditor.db.access import Principal
from auditor.db.models import AUDIT_STATES, PROJECT_NAME_MAX, Audit
from auditor.errors import ConflictError
from auditor.service.submit import submit_audit

router = APIRouter(prefix="/v1/audits", tags=["audits"])
MAX_PAGE = 200
AuditId = Annotated[
    str,
    Path(pattern=AUDIT_ID_OR_PREFIX_PATTERN, description="An audit id, or a unique prefix of 6+ characters."),
]
# Links from a submitted audit to what can be done with it (schemathesis follows them too).
_AUDIT_LINKS = {
    name: {"operationId": operation, "parameters": {"audit_id": "$response.body#/id"}}
    for name, operation in (
        ("GetAudit", "get_audit"),
        ("CancelAudit", "cancel_audit"),
        ("GetReport", "get_report"),
    )
}


def _own_project(principal: Principal) -> str | None:
    """Where a project key's id prefixes are looked up (an admin's: everywhere)."""
    return None if principal.is_admin else (principal.project or "")


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


@router.post(
    "",
    status_code=202,
    response_model=AuditPublic,
    responses={
        **error_responses(*V1_ERRORS, 403, 404, 413),
        202: {
            "links": _AUDIT_LINKS,
            "headers": {"Location": {"description": "The audit's URL.", "schema": {"type": "string"}}},
        },
    },
)
def create_audit(
    body: AuditCreate,
    context: ContextDep,
    principal: PrincipalDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Retrying with the same key (per project) returns the same audit.",
        ),
    ] = None,
) -> AuditPublic:
    """Queue an audit and answer at once; poll ``GET /v1/audits/{id}`` (or ``auditor wait``)."""
    audit_id, created = submit_audit(context, principal, body, idempotency_key)
    response.headers["Location"] = f"/v1/audits/{audit_id}"
    if created is not None:
        return audit_public(created, with_result=False, project=body.project)
    response.headers["Idempotent-Replayed"] = "true"
    with context.session() as session:  # a replay only: a new submit answers from the row it wrote
        return audit_public(queries.get_audit(session, audit_id), with_result=False)


@router.get("/{audit_id}", response_model=AuditPublic, responses=error_responses(*V1_ERRORS, 403, 404))
def get_audit(audit_id: AuditId, session: SessionDep, principal: PrincipalDep) -> AuditPublic:
    audit = queries.get_audit(session, audit_id, prefix_project=_own_project(principal))
    require_project_access(principal, audit.project.name)
    events = [
        {"state": e.state, "at": e.at.isoformat(), "message": e.message}
        for e in queries.audit_events(session, audit.id)
    ]
    return audit_public(audit, events=events)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """``<microseconds since 1970>.<audit id>`` (CURSOR_PATTERN, checked by the query parameter)."""
    micros, _, audit_id = cursor.partition(".")
    return _EPOCH + timedelta(microseconds=int(micros)), audit_id


def _encode_cursor(audit: Audit) -> str:
    return f"{(audit.created_at - _EPOCH) // timedelta(microseconds=1)}.{audit.id}"


@router.get("", response_model=AuditsPage, responses=error_responses(*V1_ERRORS, 403))
def list_audits(
    session: SessionDep,
    principal: PrincipalDep,
    project: Annotated[
        str | None, Query(min_length=1, max_length=PROJECT_NAME_MAX, pattern=NAME_PATTERN)
    ] = None,
    state: Annotated[str | None, Query(pattern="^(" + "|".join(AUDIT_STATES) + ")$")] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=NAME_MAX, pattern=TEXT_PATTERN)] = None,
    created_after: Annotated[DateTimeQuery | None, Query(description="RFC 3339, with a time zone.")] = None,
    created_before: Annotated[DateTimeQuery | None, Query(description="RFC 3339, with a time zone.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page.")
    ] = None,
) -> AuditsPage:
    """Audits newest first; a project key sees only its project's audits."""
    if project is not None:
        require_project_access(principal, project)
        projects: tuple[str, ...] | None = (project,)
    else:
        projects = None if principal.is_admin else ((principal.project,) if principal.project else ())
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


@router.post(
    "/{audit_id}/cancel",
    status_code=202,
    response_model=AuditPublic,
    responses=error_responses(*V1_ERRORS, 403, 404, 409, 413),
)
def cancel_audit(audit_id: AuditId, session: SessionDep, principal: PrincipalDep) -> AuditPublic:
    """Cancel: a queued audit at once; a running one stops at its next step (state then ``cancelled``)."""
    audit = queries.get_audit(session, audit_id, prefix_project=_own_project(principal))
    require_project_access(principal, audit.project.name)
    lifecycle.request_cancel(session, audit.id)
    session.flush()
    return audit_public(queries.get_audit(session, audit.id), with_result=False)


@router.get(
    "/{audit_id}/report",
    response_class=HTMLResponse,
    responses={
        **error_responses(*V1_ERRORS, 403, 404, 409, json_route=False),
        200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "The report."},
    },
)
def get_report(audit_id: AuditId, session: SessionDep, principal: PrincipalDep) -> HTMLResponse:
    """The self-contained HTML report of a succeeded audit (with the trend of its project)."""
    from auditor.report.service import render_audit_report

    audit = queries.get_audit(session, audit_id, prefix_project=_own_project(principal))
    require_project_access(principal, audit.project.name)
    if audit.state != "succeeded" or audit.result is None:
        raise ConflictError(
            f"audit {audit.id} is {audit.state}; a report exists once it has succeeded",
            details={"state": audit.state},
        )
    return HTMLResponse(render_audit_report(session, audit))
