"""``auditor policy suggest``: a starting policy from an audit that had a real holdout.

The holdout is fresh real data scored against the same real set at the same settings: its value of a
metric (the ``baseline``) is what a perfect synthetic set would get up to sampling noise. A rule is put
at the holdout's value moved by one interval width of the audited metric in the metric's bad direction
(``min: baseline - width`` where higher is better, ``max: baseline + width`` where lower is better): the
interval width is the sampling noise of the metric at this N, so fresh real data passes such a rule with
a margin and a synthetic set fails it only when it is worse than real data by more than the noise.

Metrics without a baseline (no holdout), without an interval (``--bootstrap 0``) or without a finite
value are left out, each with a comment saying why. The YAML is meant to be read and edited: every rule
carries a comment with the numbers it came from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from auditor.errors import BadInputError
from auditor.metrics import METRICS
from auditor.policy import finite_number

# Bounded metrics never get a threshold outside their range.
_RANGE = {
    "precision": (0.0, 1.0),
    "recall": (0.0, 1.0),
    "coverage": (0.0, 1.0),
    "tail_recall": (0.0, 1.0),
    "mode_coverage": (0.0, 1.0),
    "mode_jsd": (0.0, 1.0),
    "duplicate_rate": (0.0, 1.0),
    "memorization_rate": (0.0, 1.0),
    "authenticity": (0.0, 1.0),
}


def _round_away(value: float, up: bool, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits, rounded in the lenient direction."""
    if value == 0:
        return 0.0
    scale = 10 ** (digits - 1 - math.floor(math.log10(abs(value))))
    return (math.ceil(value * scale) if up else math.floor(value * scale)) / scale


def suggest_rules(document: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """(rules, skipped notes) for ``document``, a result document with a holdout."""
    if not document.get("holdout"):
        raise BadInputError(
            f"audit {document.get('audit_id')} has no holdout: a suggested policy needs the holdout's "
            "values as its noise floor (re-run the audit with --holdout)"
        )
    rules: list[dict[str, Any]] = []
    skipped: list[str] = []
    for name, entry in (document.get("metrics") or {}).items():
        spec = METRICS.get(name)
        baseline, low, high = (finite_number(entry.get(key)) for key in ("baseline", "ci_low", "ci_high"))
        if spec is None:
            continue
        if baseline is None:
            skipped.append(f"{name}: no holdout value")
            continue
        if low is None or high is None:
            skipped.append(f"{name}: no interval (bootstrap was off)")
            continue
        width = high - low
        lower, upper = _RANGE.get(name, (0.0 if name != "kid" else -math.inf, math.inf))
        if spec.higher_is_better:
            threshold = max(lower, _round_away(baseline - width, up=False))
            bound = "min"
        else:
            threshold = min(upper, _round_away(baseline + width, up=True))
            bound = "max"
        rules.append(
            {
                "metric": name,
                bound: threshold,
                "_why": f"holdout {baseline:.4g} {'-' if bound == 'min' else '+'} interval width "
                f"{width:.3g} (audit value {finite_number(entry.get('value')) or float('nan'):.4g})",
            }
        )
    if not rules:
        raise BadInputError(
            f"audit {document.get('audit_id')}: no metric has both a holdout value and an interval"
        )
    return rules, skipped


def suggest_policy_yaml(document: Mapping[str, Any], name: str | None = None) -> str:
    """The suggested policy as commented YAML (loads with :meth:`auditor.policy.Policy.from_yaml`)."""
    rules, skipped = suggest_rules(document)
    audit_id = str(document.get("audit_id", ""))
    protocol = (document.get("protocol") or {}).get("fingerprint", "?")
    holdout = document.get("holdout") or {}
    lines = [
        f"# Suggested by `auditor policy suggest --from {audit_id}` (protocol {protocol}).",
        f"# Each threshold is the real holdout's value (n={holdout.get('n', '?')}) moved by one interval",
        "# width of the audited metric, in the metric's bad direction: fresh real data passes with a",
        "# margin, and a synthetic set fails only when it is worse than real data by more than the",
        "# sampling noise at this N. The numbers hold for this protocol (extractor, N, k): re-suggest",
        "# when it changes. Tighten or loosen by hand; use `tier: warn` for rules that should not fail.",
        f"name: suggested-from-{audit_id[:12]}" if name is None else f"name: {name}",
        "rules:",
    ]
    for rule in rules:
        bound = "min" if "min" in rule else "max"
        lines.append(f"  # {rule['_why']}")
        lines.append(f"  - metric: {rule['metric']}")
        lines.append(f"    {bound}: {rule[bound]!r}")
    for note in skipped:
        lines.append(f"  # left out: {note}")
    return "\n".join(lines) + "\n"
