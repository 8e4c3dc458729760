"""Request dependencies as ``Annotated`` aliases: the service context, a session, the caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from auditor.db import access
from auditor.db.access import Principal
from auditor.errors import AuthError, ForbiddenError
from auditor.service.context import ServiceContext

ANONYMOUS_ADMIN = Principal(key_prefix="anonymous", is_admin=True, project=None)


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency on the thread
# pool, a thread hop per dependency per request.


async def get_context(request: Request) -> ServiceContext:
    context: ServiceContext = request.app.state.context
    return context


ContextDep = Annotated[ServiceContext, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    with context.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_principal(
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
    cache = _principal_cache(context)
    cached = cache.lookup(secret)
    if cached is not None:
        return cached
    return await run_in_threadpool(cache.get, secret, context)  # a database query: off the event loop


PrincipalDep = Annotated[Principal, Depends(get_principal)]

# How long a verified key is trusted without asking the database again; also the longest a revoked
# key keeps working on a replica that saw it recently.
PRINCIPAL_TTL_S = 10.0


class PrincipalCache:
    """Verified keys by their SHA-256 for :data:`PRINCIPAL_TTL_S` (one query per key, not per request)."""

    def __init__(self, ttl_s: float = PRINCIPAL_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def lookup(self, secret: str) -> Principal | None:
        """The cached principal for this key, if it was verified less than the TTL ago."""
        with self._lock:
            entry = self._entries.get(access.hash_secret(secret))
        return entry[0] if entry is not None and entry[1] > time.monotonic() else None

    def get(self, secret: str, context: ServiceContext) -> Principal:
        cached = self.lookup(secret)
        if cached is not None:
            return cached
        digest = access.hash_secret(secret)
        now = time.monotonic()
        with context.session() as session:
            principal = access.authenticate(session, secret)  # AuthError for unknown keys: never cached
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (principal, now + self.ttl_s)
        return principal


def _principal_cache(context: ServiceContext) -> PrincipalCache:
    cache = getattr(context, "principal_cache", None)
    if cache is None:
        cache = PrincipalCache()
        context.principal_cache = cache
    return cache


def require_project_access(principal: Principal, project: str) -> None:
    if not principal.may_access(project):
        # Same answer as for a project that does not exist would leak less, but a 403 tells an
        # operator at once that the key, not the name, is wrong; project names are not secrets.
        raise ForbiddenError(f"this API key may not access project {project!r}", details={"project": project})


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise ForbiddenError("this action needs an admin API key")
