"""A project's waivers: waive a metric's gate rules (for the project or one audit), list, revoke.

The same access rule as the project's other routes. A waiver for one audit judges its stored verdict
again at once (its gate may pass now); a project's waiver judges the audits that finish from then on.
Waivers are never edited: revoking marks one revoked, and the list is their history.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from auditor.api.deps import PrincipalDep, SessionDep, require_project_access
from auditor.api.routes.projects import ProjectPath
from auditor.api.schemas import V1_ERRORS, WAIVER_ID_PATTERN, WaiverCreate, WaiverPublic, error_responses
from auditor.db import waivers as rows
from auditor.db.base import utcnow
from auditor.db.models import Waiver

router = APIRouter(prefix="/v1/projects", tags=["waivers"])
WaiverIdPath = Annotated[str, Path(pattern=WAIVER_ID_PATTERN, description="A waiver's id.")]


def _public(project: str, waiver: Waiver) -> WaiverPublic:
    return WaiverPublic(
        id=waiver.id,
        project=project,
        metric=waiver.metric,
        reason=waiver.reason,
        audit_id=waiver.audit_id,
        created_by=waiver.created_by,
        created_at=waiver.created_at,
        expires_at=waiver.expires_at,
        revoked_at=waiver.revoked_at,
        revoked_by=waiver.revoked_by,
        active=waiver.revoked_at is None and waiver.expires_at > utcnow(),
    )


@router.post(
    "/{project}/waivers",
    status_code=201,
    response_model=WaiverPublic,
    responses=error_responses(*V1_ERRORS, 403, 404),
)
def create_waiver(
    project: ProjectPath, body: WaiverCreate, session: SessionDep, principal: PrincipalDep
) -> WaiverPublic:
    """Waive every rule on ``metric``: the verdict shows it WAIVED with the reason, who and until when.
    404 for an unknown project, or an ``audit_id`` not in it."""
    require_project_access(principal, project)
    waiver = rows.create_waiver(
        session,
        project=project,
        metric=body.metric,
        reason=body.reason,
        created_by=principal.key_prefix,
        days=body.days,
        audit_id=body.audit_id,
    )
    return _public(project, waiver)


@router.get(
    "/{project}/waivers", response_model=list[WaiverPublic], responses=error_responses(*V1_ERRORS, 403, 404)
)
def list_waivers(
    project: ProjectPath,
    session: SessionDep,
    principal: PrincipalDep,
    active: Annotated[bool, Query(description="Only those in force (default: the whole history).")] = False,
) -> list[WaiverPublic]:
    """The project's waivers, newest first: every one ever made, revoked and expired too."""
    require_project_access(principal, project)
    return [_public(project, w) for w in rows.list_waivers(session, project, include_inactive=not active)]


@router.delete(
    "/{project}/waivers/{waiver_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(*V1_ERRORS, 403, 404),
)
def revoke_waiver(
    project: ProjectPath, waiver_id: WaiverIdPath, session: SessionDep, principal: PrincipalDep
) -> Response:
    """Revoke a waiver (kept in the history); an audit's own waiver stops waiving its verdict at once."""
    require_project_access(principal, project)
    rows.revoke_waiver(session, project, waiver_id, principal.key_prefix)
    return Response(status_code=204)
