"""Projects: create, list, get; the trends of a project's metrics; its named policies."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from auditor.api.deps import PrincipalDep, SessionDep, require_admin, require_project_access
from auditor.api.schemas import (
    NAME_MAX,
    NAME_PATTERN,
    PROTOCOL_PATTERN,
    V1_ERRORS,
    PolicyCreate,
    PolicyPublic,
    ProjectCreate,
    ProjectPublic,
    TrendPointPublic,
    TrendSeries,
    TrendsPublic,
    error_responses,
    policy_document,
)
from auditor.db import access, queries
from auditor.db.models import PROJECT_NAME_MAX, SQL_INT_MAX, PolicyVersion
from auditor.errors import ConflictError
from auditor.metrics import METRICS

router = APIRouter(prefix="/v1/projects", tags=["projects"])
ProjectPath = Annotated[
    str, Path(min_length=1, max_length=PROJECT_NAME_MAX, pattern=NAME_PATTERN, description="A project name.")
]
PolicyNamePath = Annotated[str, Path(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
_PROJECT_LINKS = {
    name: {"operationId": operation, "parameters": {"project": "$response.body#/name"}}
    for name, operation in (("GetProject", "get_project"), ("ListPolicies", "list_policies"))
}


@router.post(
    "",
    status_code=201,
    response_model=ProjectPublic,
    responses={**error_responses(*V1_ERRORS, 403, 409, 413), 201: {"links": _PROJECT_LINKS}},
)
def create_project(body: ProjectCreate, session: SessionDep, principal: PrincipalDep) -> ProjectPublic:
    require_admin(principal)
    if queries.list_projects(session, (body.name,)):
        raise ConflictError(f"project {body.name!r} already exists", details={"project": body.name})
    project = queries.get_or_create_project(session, body.name)
    return ProjectPublic(name=project.name, created_at=project.created_at)


@router.get("", response_model=list[ProjectPublic], responses=error_responses(*V1_ERRORS))
def list_projects(session: SessionDep, principal: PrincipalDep) -> list[ProjectPublic]:
    names = None if principal.is_admin else ((principal.project,) if principal.project else ())
    return [
        ProjectPublic(name=p.name, created_at=p.created_at) for p in queries.list_projects(session, names)
    ]


@router.get("/{project}", response_model=ProjectPublic, responses=error_responses(*V1_ERRORS, 403, 404))
def get_project(project: ProjectPath, session: SessionDep, principal: PrincipalDep) -> ProjectPublic:
    require_project_access(principal, project)
    row = queries.get_project(session, project)
    return ProjectPublic(name=row.name, created_at=row.created_at)


@router.get("/{project}/trends", response_model=TrendsPublic, responses=error_responses(*V1_ERRORS, 403, 404))
def get_trends(
    project: ProjectPath,
    session: SessionDep,
    principal: PrincipalDep,
    metric: Annotated[
        str, Query(description="A metric name, e.g. fid.", json_schema_extra={"enum": list(METRICS)})
    ],
    protocol: Annotated[
        str | None, Query(pattern=PROTOCOL_PATTERN, description="Only this protocol fingerprint.")
    ] = None,
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


@router.post(
    "/{project}/policies",
    status_code=201,
    response_model=PolicyPublic,
    responses={
        **error_responses(*V1_ERRORS, 403, 409, 413),
        201: {
            "links": {
                "GetPolicyVersion": {
                    "operationId": "get_policy",
                    "parameters": {
                        "project": "$request.path.project",
                        "name": "$response.body#/name",
                        "version": "$response.body#/version",
                    },
                }
            }
        },
    },
)
def create_policy(
    project: ProjectPath, body: PolicyCreate, session: SessionDep, principal: PrincipalDep
) -> PolicyPublic:
    """Store a new version of a named policy (validated now, not when an audit first uses it)."""
    require_project_access(principal, project)
    row = access.create_policy_version(
        session, project=project, name=body.name, body=policy_document(body.body)
    )
    return _policy_public(project, row)


@router.get(
    "/{project}/policies", response_model=list[PolicyPublic], responses=error_responses(*V1_ERRORS, 403, 404)
)
def list_policies(project: ProjectPath, session: SessionDep, principal: PrincipalDep) -> list[PolicyPublic]:
    require_project_access(principal, project)
    return [_policy_public(project, row) for row in access.list_policies(session, project)]


@router.get(
    "/{project}/policies/{name}", response_model=PolicyPublic, responses=error_responses(*V1_ERRORS, 403, 404)
)
def get_policy(
    project: ProjectPath,
    name: PolicyNamePath,
    session: SessionDep,
    principal: PrincipalDep,
    version: Annotated[int | None, Query(ge=1, le=SQL_INT_MAX, description="Default: the latest.")] = None,
) -> PolicyPublic:
    require_project_access(principal, project)
    return _policy_public(project, access.get_policy(session, project=project, name=name, version=version))
