"""Request dependencies as ``Annotated`` aliases: the service context, a session, the caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
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


# scope="function": the session commits when the route returns, before the response is sent, so a 201
# or 204 means stored, and a failed commit is the answer instead of a lie told earlier.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


# Declared as security schemes (the OpenAPI document and /docs show them); read by get_principal.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <api key>`.")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <api key>`.")


async def get_principal(
    request: Request,
    context: ContextDep,
    _bearer_credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    x_api_key: Annotated[str | None, Security(_api_key_header)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    if not context.settings.auth_required:
        return ANONYMOUS_ADMIN
    secret = x_api_key
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthError("Authorization header must be 'Bearer <api key>'")
        secret = value.strip()
    if not secret:
        raise AuthError("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    cache = principal_cache(context)
    cached = cache.lookup(secret)
    if cached is not None:
        return cached
    return await run_in_threadpool(cache.get, secret, context)  # a database query: off the event loop


PrincipalDep = Annotated[Principal, Depends(get_principal)]

# How long a verified key is trusted without asking the database again.
PRINCIPAL_TTL_S = 10.0
# How often at most a process asks whether any key was revoked (one aggregate query, whatever the
# traffic): a key revoked elsewhere (the CLI, another API process) stops working within about this long.
# The process that revokes a key drops its cache at once.
REVOCATION_CHECK_S = 1.0


class PrincipalCache:
    """Verified keys by their SHA-256 for :data:`PRINCIPAL_TTL_S` (one query per key, not per request).

    Revocations: every :data:`REVOCATION_CHECK_S` one request reads the keys' revocation watermark
    (:func:`auditor.db.access.revocation_watermark`); when it changed, every cached key is dropped. An
    entry is only stored if no drop happened while its key was being checked, so a key verified just
    before its revocation cannot slip back into the cache after the drop.
    """

    def __init__(
        self, ttl_s: float = PRINCIPAL_TTL_S, revocation_check_s: float = REVOCATION_CHECK_S
    ) -> None:
        self.ttl_s = ttl_s
        self.revocation_check_s = revocation_check_s
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()
        self._epoch = 0  # bumped by every drop
        self._watermark: object = None
        self._next_check = 0.0  # time.monotonic() of the next revocation check; 0: on first use

    def lookup(self, secret: str) -> Principal | None:
        """The cached principal for this key, if it was verified less than the TTL ago and no revocation
        check is due."""
        now = time.monotonic()
        with self._lock:
            if now >= self._next_check:
                return None
            entry = self._entries.get(access.hash_secret(secret))
        return entry[0] if entry is not None and entry[1] > now else None

    def get(self, secret: str, context: ServiceContext) -> Principal:
        digest = access.hash_secret(secret)
        with context.session() as session:
            self._check_revocations(session)
            cached = self.lookup(secret)
            if cached is not None:
                return cached
            with self._lock:
                epoch = self._epoch
            expires = time.monotonic() + self.ttl_s
            principal = access.authenticate(session, secret)  # AuthError for unknown keys: never cached
        with self._lock:
            if self._epoch == epoch:
                if len(self._entries) > 10_000:
                    self._entries.clear()
                self._entries[digest] = (principal, expires)
        return principal

    def clear(self) -> None:
        """Forget every verified key (after a revocation in this process)."""
        with self._lock:
            self._entries.clear()
            self._epoch += 1

    def _check_revocations(self, session: Session) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next_check:
                return
            self._next_check = now + self.revocation_check_s  # claimed: other requests use the cache
        watermark = access.revocation_watermark(session)
        with self._lock:
            if watermark != self._watermark:
                self._watermark = watermark
                self._entries.clear()
                self._epoch += 1


def principal_cache(context: ServiceContext) -> PrincipalCache:
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
