"""API keys: an admin creates project-scoped keys and revokes keys (the first admin key comes from
``auditor keys create``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from auditor.api.deps import ContextDep, PrincipalDep, SessionDep, principal_cache, require_admin
from auditor.api.schemas import KEY_PREFIX_PATTERN, V1_ERRORS, KeyCreate, KeyCreated, error_responses
from auditor.db import access

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post(
    "",
    status_code=201,
    response_model=KeyCreated,
    responses={
        **error_responses(*V1_ERRORS, 403, 413),
        201: {
            "links": {
                "RevokeKey": {"operationId": "revoke_key", "parameters": {"prefix": "$response.body#/prefix"}}
            }
        },
    },
)
def create_key(body: KeyCreate, session: SessionDep, principal: PrincipalDep) -> KeyCreated:
    require_admin(principal)
    key = access.create_api_key(session, name=body.name, is_admin=body.project is None, project=body.project)
    return KeyCreated(key=key.secret, prefix=key.prefix, is_admin=key.is_admin, project=key.project)


@router.delete(
    "/{prefix}",
    status_code=204,
    response_class=Response,
    operation_id="revoke_key",
    responses=error_responses(*V1_ERRORS, 403, 404),
)
def revoke_key(
    prefix: Annotated[str, Path(pattern=KEY_PREFIX_PATTERN, description="The key's public prefix.")],
    context: ContextDep,
    session: SessionDep,
    principal: PrincipalDep,
) -> Response:
    """Revoke a key (idempotent): refused at once by this process, within about a second by the others."""
    require_admin(principal)
    access.revoke_api_key(session, prefix)
    session.commit()  # revoked for every process before this one forgets its cached keys
    principal_cache(context).clear()
    return Response(status_code=204)
