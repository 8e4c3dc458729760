"""Synthetic-data quality auditor: audit a synthetic dataset against real data.

The public Python API (:data:`__all__`)::

    import auditor

    result = auditor.audit(real, synthetic, holdout=holdout, policy="gate.yaml")
    result.metrics["fid"].value, result.passed
    result.save_report("report.html")

``import auditor`` loads nothing heavy (no torch, NumPy or pandas): the names below are imported on
first use, and :func:`audit` imports the pipeline when it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from auditor.client import AuditorClient
    from auditor.errors import AuditorError
    from auditor.notebook import AuditOutcome, MetricEstimate, audit
    from auditor.policy import Policy

# name -> the module that defines it, imported when the name is first read.
_LAZY = {
    "audit": "auditor.notebook",
    "AuditOutcome": "auditor.notebook",
    "MetricEstimate": "auditor.notebook",
    "AuditorError": "auditor.errors",
    "Policy": "auditor.policy",
    "AuditorClient": "auditor.client",
}

__all__ = [
    "AuditOutcome",
    "AuditorClient",
    "AuditorError",
    "MetricEstimate",
    "Policy",
    "__version__",
    "audit",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'auditor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later reads skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
