"""Projects: create, list, get; the trends of a project's metrics; its named policies."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from auditor.api.deps import PrincipalDep, SessionDep, require_admin, require_project_access
from auditor.api.schemas import (
    PolicyCreate,
    PolicyPublic,
    ProjectCreate,
    ProjectPublic,
    TrendPointPublic,
    TrendSeries,
    TrendsPublic,
)
from auditor.db import access, queries
from auditor.db.models import PolicyVersion
from auditor.errors import ConflictError
from auditor.policy import Policy

router = APIRouter(prefix="/v1/projects", tags=["projects"])


@router.post("", status_code=201, response_model=ProjectPublic)
def create_project(body: ProjectCreate, session: SessionDep, principal: PrincipalDep) -> ProjectPublic:
    require_admin(principal)
    if queries.list_projects(session, (body.name,)):
        raise ConflictError(f"project {body.name!r} already exists", details={"project": body.name})
    project = queries.get_or_create_project(session, body.name)
    return ProjectPublic(name=project.name, created_at=project.created_at)


@router.get("", response_model=list[ProjectPublic])
def list_projects(session: SessionDep, principal: PrincipalDep) -> list[ProjectPublic]:
    names = None if principal.is_admin else ((principal.project,) if principal.project else ())
    return [
        ProjectPublic(name=p.name, created_at=p.created_at) for p in queries.list_projects(session, names)
    ]


@router.get("/{project}", response_model=ProjectPublic)
def get_project(project: str, session: SessionDep, principal: PrincipalDep) -> ProjectPublic:
    require_project_access(principal, project)
    row = queries.get_project(session, project)
    return ProjectPublic(name=row.name, created_at=row.created_at)


@router.get("/{project}/trends", response_model=TrendsPublic)
def get_trends(
    project: str,
    session: SessionDep,
    principal: PrincipalDep,
    metric: Annotated[str, Query(description="A metric name, e.g. fid.")],
    protocol: Annotated[str | None, Query(description="Only this protocol fingerprint.")] = None,
) -> TrendsPublic:
    """A metric over time and generations, one series per protocol (they are never merged)."""
    require_project_access(principal, project)
    points = queries.metric_trend(session, project=project, metric=metric, protocol_fingerprint=protocol)
    series: dict[str | None, list[TrendPointPublic]] = {}
    for point in points:
        series.setdefault(point.protocol_fingerprint, []).append(
            TrendPointPublic(
                audit_id=point.audit_id,
                created_at=point.created_at,
                generation=point.generation,
                value=point.value,
                ci_low=point.ci_low,
                ci_high=point.ci_high,
                baseline=point.baseline,
            )
        )
    return TrendsPublic(
        project=project,
        metric=metric,
        series=[TrendSeries(protocol_fingerprint=fp, points=pts) for fp, pts in series.items()],
    )


def _policy_public(project: str, row: PolicyVersion) -> PolicyPublic:
    return PolicyPublic(
        project=project, name=row.name, version=row.version, body=row.body, created_at=row.created_at
    )


@router.post("/{project}/policies", status_code=201, response_model=PolicyPublic)
def create_policy(
    project: str, body: PolicyCreate, session: SessionDep, principal: PrincipalDep
) -> PolicyPublic:
    """Store a new version of a named policy (validated now, not when an audit first uses it)."""
    require_project_access(principal, project)
    Policy.from_dict(body.body)  # PolicyError (422) with the reason when it is not a valid policy
    row = access.create_policy_version(session, project=project, name=body.name, body=body.body)
    return _policy_public(project, row)


@router.get("/{project}/policies", response_model=list[PolicyPublic])
def list_policies(project: str, session: SessionDep, principal: PrincipalDep) -> list[PolicyPublic]:
    require_project_access(principal, project)
    return [_policy_public(project, row) for row in access.list_policies(session, project)]


@router.get("/{project}/policies/{name}", response_model=PolicyPublic)
def get_policy(
    project: str,
    name: str,
    session: SessionDep,
    principal: PrincipalDep,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> PolicyPublic:
    require_project_access(principal, project)
    return _policy_public(project, access.get_policy(session, project=project, name=name, version=version))
