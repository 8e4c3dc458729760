"""Reports of recorded audits (the API's ``/report``, ``auditor show --report``): document + trend +
the previews stored with the audit (unless the operator switched previews off)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from auditor.config import Settings, get_settings
from auditor.db import queries
from auditor.db.models import Audit
from auditor.pipeline import previews as pv
from auditor.pipeline.report_data import ReportData
from auditor.report.html import render_report


def lineage_trend(session: Session, audit: Audit) -> list[dict[str, Any]]:
    """The audit's project under the same protocol: the rows of the report's trend section."""
    return [
        {
            "audit_id": row.id,
            "generation": row.generation,
            "metrics": (row.result or {}).get("metrics", {}),
            "passed": row.passed,
        }
        for row in queries.protocol_lineage(session, audit)
        if row.result is not None
    ]


def stored_previews(session: Session, audit: Audit) -> pv.Previews:
    """The previews stored with the audit (empty when it has none)."""
    content = queries.audit_artifact_content(session, audit.id, pv.ARTIFACT_NAME)
    return pv.decode_previews(content) if content else {}


def render_audit_report(session: Session, audit: Audit, settings: Settings | None = None) -> str:
    """The audit's report; with previews switched off by the operator (``AUDITOR_PREVIEWS=off``) the
    stored previews are not even read, whenever they were made."""
    if audit.result is None:
        raise ValueError(f"audit {audit.id} has no result")
    settings = settings or get_settings()
    report = ReportData(**audit.report_data) if audit.report_data else None
    trend = lineage_trend(session, audit)
    previews = stored_previews(session, audit) if settings.previews else None
    return render_report(
        audit.result,
        report,
        trend=trend if len(trend) > 1 else None,
        previews=previews,
        previews_off=None if settings.previews else pv.OPERATOR_OFF,
    )
