"""API keys: an admin creates project-scoped keys (the first admin key comes from ``auditor keys create``)."""

from __future__ import annotations

from fastapi import APIRouter

from auditor.api.deps import PrincipalDep, SessionDep, require_admin
from auditor.api.schemas import KeyCreate, KeyCreated
from auditor.db import access

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(body: KeyCreate, session: SessionDep, principal: PrincipalDep) -> KeyCreated:
    require_admin(principal)
    key = access.create_api_key(session, name=body.name, is_admin=body.project is None, project=body.project)
    return KeyCreated(key=key.secret, prefix=key.prefix, is_admin=key.is_admin, project=key.project)
