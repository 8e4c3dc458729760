"""An audit recorded as the API records it (queued, no message sent): for tests that drive the
execution layer themselves."""

from __future__ import annotations

import uuid

from auditor.db import queries
from auditor.pipeline.spec import AuditSpec
from auditor.service.context import ServiceContext


def record_queued_audit(context: ServiceContext, spec: AuditSpec) -> str:
    """Insert ``spec`` as a queued audit of its project and return its id."""
    audit_id = uuid.uuid4().hex
    with context.session() as session:
        queries.create_audit(
            session,
            audit_id=audit_id,
            project=spec.project,
            spec=spec.model_dump(mode="json"),
            extractor=spec.extractor,
            state="queued",
            source="api",
            fresh_id=True,
        )
    return audit_id
