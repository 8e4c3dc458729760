"""Reports of recorded audits (the API's ``/report``, ``auditor show --report``): document + trend."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from auditor.db import queries
from auditor.db.models import Audit
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


def render_audit_report(session: Session, audit: Audit) -> str:
    if audit.result is None:
        raise ValueError(f"audit {audit.id} has no result")
    report = ReportData(**audit.report_data) if audit.report_data else None
    trend = lineage_trend(session, audit)
    return render_report(audit.result, report, trend=trend if len(trend) > 1 else None)
