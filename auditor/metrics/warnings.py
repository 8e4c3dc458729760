"""Named warning categories, so callers can filter or escalate them precisely."""


class AuditWarning(UserWarning):
    """Base class of every warning the auditor raises."""


class SampleSizeWarning(AuditWarning):
    """A sample size that biases or destabilises a metric (N < d, unequal sets, small subsets)."""


class DiagnosticsWarning(AuditWarning):
    """Per-sample diagnostics that were computed but not stored (over AUDITOR_MAX_ARTIFACT_MB)."""
