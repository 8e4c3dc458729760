"""The operator's maxima on the metric parameters a caller controls.

The schema (:class:`~auditor.pipeline.evaluate.MetricParams`) bounds every number absolutely; the
operator bounds the costly ones lower, per deployment (``AUDITOR_MAX_*`` settings). A caller may ask
for less, never for more: above a maximum the audit is refused before any work (``limit_exceeded``,
HTTP 422, CLI exit 2), never silently clamped, so a result always means what its spec says. The
memory budget works the same way, with the operator's ``AUDITOR_MEMORY_BUDGET_MB`` as default and
maximum.
"""

from __future__ import annotations

from auditor.config import Settings
from auditor.errors import LimitExceededError
from auditor.pipeline.evaluate import MetricParams

# MetricParams field -> the Settings attribute holding its maximum.
PARAMETER_MAXIMA = {
    "nearest_k": "max_nearest_k",
    "bootstrap": "max_bootstrap",
    "spectral_bootstrap": "max_spectral_bootstrap",
    "kid_subsets": "max_kid_subsets",
    "kid_subset_size": "max_kid_subset_size",
    "num_modes": "max_num_modes",
    "memory_budget_mb": "memory_budget_mb",
}


def apply_operator_limits(params: MetricParams, settings: Settings) -> MetricParams:
    """``params`` with the memory budget resolved, after refusing any value above its maximum."""
    for name, setting in PARAMETER_MAXIMA.items():
        value, maximum = getattr(params, name), getattr(settings, setting)
        if value is not None and value > maximum:
            raise LimitExceededError(
                f"{name}={value} exceeds this server's maximum of {maximum} "
                f"(AUDITOR_{setting.upper()}); ask for at most {maximum}",
                details={"field": f"params.{name}", "value": value, "maximum": maximum},
            )
    if params.memory_budget_mb is None:
        return params.model_copy(update={"memory_budget_mb": settings.memory_budget_mb})
    return params
