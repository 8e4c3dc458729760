"""Audits: submit (202, idempotent), get, list (filters, cursor), cancel, report, per-sample evidence."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import HTMLResponse

from auditor import samples
from auditor.api.deps import ContextDep, PrincipalDep, SessionDep, require_project_access
from auditor.api.schemas import (
    AUDIT_ID_OR_PREFIX_PATTERN,
    CURSOR_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    NAME_MAX,
    NAME_PATTERN,
    SAMPLES_CURSOR_PATTERN,
    TEXT_PATTERN,
    V1_ERRORS,
    AuditCreate,
    AuditPublic,
    AuditsPage,
    DateTimeQuery,
    ErrorDetail,
    SamplesPage,
    error_responses,
)
from auditor.db import lifecycle, queries
from auditor.db.access import Principal
from auditor.db.models import AUDIT_STATES, PROJECT_NAME_MAX, SQL_INT_MAX, Audit
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
        ("GetSamples", "get_samples"),
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
def get_report(
    audit_id: AuditId, session: SessionDep, principal: PrincipalDep, context: ContextDep
) -> HTMLResponse:
    """The self-contained HTML report of a succeeded audit (with the trend of its project and, unless
    the audit or the operator switched them off, the previews of its galleries' samples)."""
    from auditor.report.service import render_audit_report

    audit = queries.get_audit(session, audit_id, prefix_project=_own_project(principal))
    require_project_access(principal, audit.project.name)
    if audit.state != "succeeded" or audit.result is None:
        raise ConflictError(
            f"audit {audit.id} is {audit.state}; a report exists once it has succeeded",
            details={"state": audit.state},
        )
    return HTMLResponse(render_audit_report(session, audit, context.settings))


def _choice(names: Any) -> str:
    return "^(" + "|".join(names) + ")$"


@router.get(
    "/{audit_id}/samples",
    response_model=SamplesPage,
    response_model_exclude_unset=True,  # a synthetic row has no real-side fields, and vice versa
    responses={
        **error_responses(*V1_ERRORS, 403, 404, 409),
        200: {
            "description": "One page of samples (JSON), or with format=parquet every matching sample.",
            "content": {samples.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
    },
)
def get_samples(
    audit_id: AuditId,
    session: SessionDep,
    principal: PrincipalDep,
    side: Annotated[str, Query(pattern=_choice(samples.SIDES), description="Whose samples.")] = "synthetic",
    flag: Annotated[
        str | None,
        Query(
            pattern=_choice(samples.FLAGS),
            description="Only the flagged samples: memorized, off_support, duplicate (synthetic, "
            "holdout); uncovered, tail (real). Another side's flag is 422 invalid_filter.",
        ),
    ] = None,
    mode: Annotated[int | None, Query(ge=0, le=SQL_INT_MAX, description="Only this mode.")] = None,
    order: Annotated[
        str,
        Query(
            pattern=_choice(f"-?{name}" for name in samples.ORDER_NAMES),
            description="index (default), or a distance; - for descending. Per side: "
            + "; ".join(f"{side}: {', '.join(names)}" for side, names in samples.ORDERS.items()),
        ),
    ] = "index",
    limit: Annotated[int, Query(ge=1, le=samples.MAX_LIMIT)] = samples.DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(pattern=SAMPLES_CURSOR_PATTERN, description="next_cursor of the previous page.")
    ] = None,
    output: Annotated[
        str,
        Query(
            alias="format",
            pattern="^(json|parquet)$",
            description="parquet: every matching sample, one file.",
        ),
    ] = "json",
) -> Any:
    """The per-sample evidence behind a succeeded audit's metrics: which samples are memorized, off the
    real support, duplicated, uncovered, in the tail (keyset pages, or the filtered table as parquet).

    404 ``no_diagnostics`` when the audit stored none (see its ``result.diagnostics.omitted``); 409
    ``conflict`` before it has succeeded, ``not_computed`` for a column its metrics did not compute.
    """
    audit = queries.get_audit(session, audit_id, prefix_project=_own_project(principal))
    require_project_access(principal, audit.project.name)
    query = samples.SampleQuery(side=side, flag=flag, mode=mode, order=order, limit=limit, cursor=cursor)
    query.check()
    table = samples.read_table(session, audit, side)
    if output == "parquet":
        return Response(
            samples.encode_table(samples.select(table, query)),
            media_type=samples.MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{audit.id}-{side}.parquet"'},
        )
    found = samples.page(table, query)
    return SamplesPage.model_validate({"audit_id": audit.id, **found.to_dict()})
