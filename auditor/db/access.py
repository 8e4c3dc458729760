"""API keys and named policies: who may call the API, and the gate policies audits refer to by name.

Keys look like ``sda_<8 hex prefix>_<43 url-safe characters>``: the prefix identifies the key in
listings and logs, the whole string is the secret. Only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auditor.db.base import utcnow
from auditor.db.models import ApiKey, PolicyVersion, Project
from auditor.db.queries import get_or_create_project, get_project
from auditor.errors import AuthError, BadInputError, ConflictError, NotFoundError

KEY_SCHEME = "sda"
POLICY_VERSION_ATTEMPTS = 5


@dataclass(frozen=True)
class Principal:
    """Who is calling: an admin key sees every project, a project key only its own."""

    key_prefix: str
    is_admin: bool
    project: str | None

    def may_access(self, project: str) -> bool:
        return self.is_admin or self.project == project


@dataclass(frozen=True)
class NewKey:
    secret: str  # shown once, never stored
    prefix: str
    is_admin: bool
    project: str | None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_api_key(
    session: Session, *, name: str, is_admin: bool = False, project: str | None = None
) -> NewKey:
    if is_admin == (project is not None):
        raise BadInputError("a key is either an admin key or scoped to exactly one project")
    project_row = get_or_create_project(session, project) if project is not None else None
    prefix = f"{KEY_SCHEME}_{secrets.token_hex(4)}"
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    session.add(
        ApiKey(
            prefix=prefix,
            secret_sha256=hash_secret(secret),
            name=name,
            is_admin=is_admin,
            project_id=project_row.id if project_row is not None else None,
            created_at=utcnow(),
        )
    )
    session.flush()
    return NewKey(secret=secret, prefix=prefix, is_admin=is_admin, project=project)


def authenticate(session: Session, secret: str) -> Principal:
    """The principal of a presented key; :class:`AuthError` for an unknown or revoked key."""
    row = session.execute(
        sa.select(ApiKey, Project.name)
        .outerjoin(Project, ApiKey.project_id == Project.id)
        .where(ApiKey.secret_sha256 == hash_secret(secret), ApiKey.revoked_at.is_(None))
    ).one_or_none()
    if row is None:
        raise AuthError("unknown or revoked API key")
    key, project_name = row
    return Principal(key_prefix=key.prefix, is_admin=key.is_admin, project=project_name)


def revoke_api_key(session: Session, prefix: str) -> None:
    key = session.scalars(sa.select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    if key is None:
        raise NotFoundError(f"no API key with prefix {prefix!r}", details={"prefix": prefix})
    key.revoked_at = key.revoked_at or utcnow()
    session.flush()


def revocation_watermark(session: Session) -> tuple[int, int, Any]:
    """What changes whenever a key is revoked or deleted: (keys, revoked keys, latest revocation).

    One aggregate over a small table; an API process compares it with the value it saw last to drop
    the keys it cached (see :class:`auditor.api.deps.PrincipalCache`).
    """
    row = session.execute(
        sa.select(sa.func.count(), sa.func.count(ApiKey.revoked_at), sa.func.max(ApiKey.revoked_at))
    ).one()
    return int(row[0]), int(row[1]), row[2]


def count_admin_keys(session: Session) -> int:
    return int(
        session.scalar(
            sa.select(sa.func.count()).select_from(ApiKey).where(ApiKey.is_admin, ApiKey.revoked_at.is_(None))
        )
        or 0
    )


# --- named policies -------------------------------------------------------------------------------------


def create_policy_version(
    session: Session, *, project: str, name: str, body: dict[str, Any]
) -> PolicyVersion:
    """Store ``body`` as the next version of policy ``name`` (1 for a new name).

    Two requests storing the same name at once both read the same latest version; the unique
    constraint refuses the second insert, which is retried (in a savepoint) with the version after.
    """
    project_row = get_or_create_project(session, project)
    for _ in range(POLICY_VERSION_ATTEMPTS):
        latest = session.scalar(
            sa.select(sa.func.max(PolicyVersion.version)).where(
                PolicyVersion.project_id == project_row.id, PolicyVersion.name == name
            )
        )
        row = PolicyVersion(
            project_id=project_row.id, name=name, version=int(latest or 0) + 1, body=body, created_at=utcnow()
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            continue
        return row
    raise ConflictError(
        f"policy {name!r} of project {project!r} is being updated concurrently; retry",
        details={"policy": name},
    )


def list_policies(session: Session, project: str) -> list[PolicyVersion]:
    project_row = get_project(session, project)
    return list(
        session.scalars(
            sa.select(PolicyVersion)
            .where(PolicyVersion.project_id == project_row.id)
            .order_by(PolicyVersion.name, PolicyVersion.version)
        ).all()
    )


def get_policy(session: Session, *, project: str, name: str, version: int | None = None) -> PolicyVersion:
    """A policy by name: the given version, or the latest."""
    project_row = get_project(session, project)
    query = sa.select(PolicyVersion).where(
        PolicyVersion.project_id == project_row.id, PolicyVersion.name == name
    )
    query = query.where(PolicyVersion.version == version) if version is not None else query
    row = session.scalars(query.order_by(PolicyVersion.version.desc()).limit(1)).one_or_none()
    if row is None:
        suffix = f" version {version}" if version is not None else ""
        raise NotFoundError(
            f"project {project!r} has no policy {name!r}{suffix}",
            details={"policy": name, "version": version},
        )
    return row
