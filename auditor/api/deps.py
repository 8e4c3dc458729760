"""Request dependencies as ``Annotated`` aliases: the service context, a session, the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from auditor.db import access
from auditor.db.access import Principal
from auditor.errors import AuthError, ForbiddenError
from auditor.service.context import ServiceContext

ANONYMOUS_ADMIN = Principal(key_prefix="anonymous", is_admin=True, project=None)


def get_context(request: Request) -> ServiceContext:
    context: ServiceContext = request.app.state.context
    return context


ContextDep = Annotated[ServiceContext, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    with context.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_principal(
    context: ContextDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Principal:
    """The caller, from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    if not context.settings.auth_required:
        return ANONYMOUS_ADMIN
    secret = x_api_key
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthError("Authorization header must be 'Bearer <api key>'")
        secret = value.strip()
    if not secret:
        raise AuthError("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    with context.session() as session:
        return access.authenticate(session, secret)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_project_access(principal: Principal, project: str) -> None:
    if not principal.may_access(project):
        # Same answer as for a project that does not exist would leak less, but a 403 tells an
        # operator at once that the key, not the name, is wrong; project names are not secrets.
        raise ForbiddenError(f"this API key may not access project {project!r}", details={"project": project})


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise ForbiddenError("this action needs an admin API key")
