"""Self-contained HTML audit report (inline CSS and SVG; no network, no JavaScript)."""

from auditor.report.html import fmt_number, render_report

__all__ = ["fmt_number", "render_report"]
