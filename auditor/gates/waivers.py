"""Waivers: a rule's failure (or warning) accepted for a project or one audit, with reason and expiry.

A waiver names a metric: every rule outcome on it that is not ``pass`` becomes ``waived``, with the
waiver's id, reason, author and expiry beside it, and the verdict's counts and ``passed`` follow (an
audit whose only failures are waived passes its gate). ``waived_from`` keeps the outcome the rule gave,
so revoking an audit's waiver gives it back. Pure: the waivers in force come from the database
(:mod:`auditor.db.waivers`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any


def waiver_summary(waiver: Any) -> dict[str, Any]:
    """What a verdict records of a waiver (a :class:`~auditor.db.models.Waiver` or a dict like it)."""

    def get(name: str) -> Any:
        return waiver.get(name) if isinstance(waiver, Mapping) else getattr(waiver, name)

    expires = get("expires_at")
    return {
        "id": get("id"),
        "metric": get("metric"),
        "reason": get("reason"),
        "created_by": get("created_by"),
        "expires_at": expires.isoformat() if hasattr(expires, "isoformat") else expires,
        "audit_id": get("audit_id"),
    }


def apply_waivers(verdict: Mapping[str, Any], waivers: Sequence[Any]) -> dict[str, Any]:
    """``verdict`` with the waivers in force applied (a new dict; earlier waivers are undone first)."""
    out = copy.deepcopy(dict(verdict))
    by_metric: dict[str, dict[str, Any]] = {}
    for waiver in waivers:  # an audit's own waiver wins over the project's
        summary = waiver_summary(waiver)
        if summary["metric"] not in by_metric or summary["audit_id"] is not None:
            by_metric[summary["metric"]] = summary
    rules = []
    for rule in out.get("rules") or []:
        rule = dict(rule)
        if "waived_from" in rule:  # undo an earlier application
            rule["outcome"] = rule.pop("waived_from")
            rule.pop("waiver", None)
        waiver = by_metric.get(str(rule.get("metric")))
        if waiver is not None and rule.get("outcome") in ("fail", "warn"):
            rule["waived_from"] = rule["outcome"]
            rule["outcome"] = "waived"
            rule["waiver"] = waiver
        rules.append(rule)
    if out.get("passed") is None and not rules:
        return out  # no policy: nothing to waive
    out["rules"] = rules
    out["failed"] = sum(rule["outcome"] == "fail" for rule in rules)
    out["warned"] = sum(rule["outcome"] == "warn" for rule in rules)
    out["waived"] = sum(rule["outcome"] == "waived" for rule in rules)
    out["passed"] = out["failed"] == 0
    out["waivers"] = sorted({rule["waiver"]["id"] for rule in rules if "waiver" in rule})
    return out
