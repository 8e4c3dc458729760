"""Submitting an audit over the API: validate everything cheap, record it, commit, then enqueue.

The order matters: the audit row is committed before its task is sent, so a worker can never receive
an id it cannot find; if sending fails (broker down) the audit stays ``queued`` and the sweeper sends
it later, so an accepted audit is never lost.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError

from auditor.api.schemas import AuditCreate, policy_document
from auditor.datasets.options import DatasetLimits
from auditor.datasets.refs import (
    FORMAT_MODALITIES,
    WrongModalityError,
    check_reference,
    detect_format,
    resolve_local_path,
)
from auditor.datasets.uri import has_braces, parse_uri
from auditor.db import access, queries
from auditor.db.access import Principal
from auditor.db.models import Audit
from auditor.errors import DatasetNotFoundError, ForbiddenError, ServiceUnavailableError
from auditor.extractors.base import FeatureExtractor
from auditor.gates.baselines import resolve_baselines
from auditor.pipeline.spec import AuditSpec
from auditor.pipeline.stages import accepted_modalities, prepare, sides_of
from auditor.service.context import ServiceContext

log = logging.getLogger(__name__)


def build_spec(context: ServiceContext, body: AuditCreate) -> AuditSpec:
    """The audit spec with a named policy resolved to its body (the spec records the exact rules)."""
    policy: dict[str, Any] | None = policy_document(body.policy) if body.policy is not None else None
    if body.policy_name is not None:
        with context.session() as session:
            row = access.get_policy(
                session, project=body.project, name=body.policy_name, version=body.policy_version
            )
            policy = dict(row.body)
    fields = body.model_dump(exclude={"policy", "policy_name", "policy_version"})
    return AuditSpec.model_validate({**fields, "policy": policy})


def check_references(context: ServiceContext, spec: AuditSpec, extractor: FeatureExtractor) -> None:
    """Refuse, in the request, a reference that cannot be read: cheap checks only, no hashing.

    Options within the operator's limits, scheme enabled, an http(s) host allowed (not internal); for
    local references: inside the data roots, existing, a known format, and a modality the extractor
    reads (where the format alone tells it). Listing, fingerprinting and downloading are the worker's
    ``start`` stage, which re-checks everything before any heavy work.
    """
    accepted = accepted_modalities(extractor)
    roots = context.settings.data_root_paths()
    limits = DatasetLimits.from_settings(context.settings)
    for ref in sides_of(spec).values():
        try:
            parsed = parse_uri(ref.uri)
            check_reference(parsed, ref.options, context.settings.remote_scheme_set(), limits)
            if not parsed.is_local or has_braces(parsed.path):
                continue
            path = resolve_local_path(ref.uri, roots, allow_directory=True)
        except (ValueError, OSError) as exc:
            # What the operating system or the URL parser cannot even look up (a NUL byte after
            # percent-decoding, a name too long, "//[" read as an IPv6 host) names no dataset.
            raise DatasetNotFoundError(
                f"dataset not found: {ref.uri} ({exc})", details={"uri": ref.uri}
            ) from exc
        fmt = detect_format(path, ref.format)
        modalities = FORMAT_MODALITIES.get(fmt, ())
        if modalities and not set(modalities) & accepted:
            raise WrongModalityError(
                f"extractor {extractor.name!r} reads {' or '.join(sorted(accepted))} data, but {ref.uri} "
                f"is a {fmt} dataset ({' or '.join(modalities)})",
                details={"uri": ref.uri, "format": fmt, "allowed": sorted(accepted)},
            )


def submit_audit(
    context: ServiceContext, principal: Principal, body: AuditCreate, idempotency_key: str | None
) -> tuple[str, Audit | None]:
    """Record and enqueue an audit.

    Returns the audit id and, when this call created it, the new row (detached; its ``project`` not
    loaded: the name is the body's), so the API can answer without reading it back; ``None`` for an
    idempotent replay.
    """
    if not principal.may_access(body.project):
        raise ForbiddenError(f"this API key may not submit audits to project {body.project!r}")
    if idempotency_key is not None:
        existing = _find_idempotent(context, body.project, idempotency_key)
        if existing is not None:
            return existing, None
    spec = build_spec(context, body)
    # extractor, metrics, policy applicability, the operator's limits
    prepared = prepare(spec, resolve_devices=False, settings=context.settings)
    check_references(context, spec, prepared.extractor)
    if prepared.policy is not None and prepared.policy.baseline_names():
        # The history baselines, resolved now: a missing one is an error before anything is queued.
        with context.session() as session:
            baselines = resolve_baselines(
                session, prepared.policy, project=spec.project, parent_audit_id=spec.parent_audit_id
            )
        spec = spec.model_copy(update={"baselines": baselines})
    audit_id = uuid.uuid4().hex
    # Projects are never deleted by the service, so their ids are cached per process: one round trip
    # less per submit. Should one vanish anyway (a database restored underneath), the foreign key
    # refuses the insert and the submit is retried once with a lookup.
    project_id = context.project_ids.get(spec.project)
    for cached in (True, False):
        try:
            with context.session() as session:
                audit = queries.create_audit(
                    session,
                    audit_id=audit_id,
                    project=spec.project,
                    spec=spec.model_dump(mode="json"),
                    extractor=spec.extractor,
                    parent_audit_id=spec.parent_audit_id,
                    generation=spec.generation,
                    tags=spec.tags,
                    state="queued",
                    source="api",
                    idempotency_key=idempotency_key,
                    fresh_id=True,
                    project_id=project_id if cached else None,
                )
            break
        except IntegrityError:
            # A concurrent request with the same Idempotency-Key won the race: answer with its audit.
            if idempotency_key is not None:
                existing = _find_idempotent(context, body.project, idempotency_key)
                if existing is not None:
                    return existing, None
            if not cached or project_id is None:
                raise
            context.project_ids.pop(spec.project, None)
    context.project_ids[spec.project] = audit.project_id
    try:
        context.require_dispatcher().enqueue_start(audit_id)
    except ServiceUnavailableError:
        log.warning("audit %s accepted but not yet queued (broker down); the sweeper will send it", audit_id)
    return audit_id, audit


def _find_idempotent(context: ServiceContext, project: str, key: str) -> str | None:
    with context.session() as session:
        return queries.find_audit_by_idempotency_key(session, project=project, key=key)


__all__ = ["build_spec", "check_references", "submit_audit"]
