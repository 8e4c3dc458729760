"""Gate policies: per-metric bounds with warn / fail tiers, and the verdict they give.

A policy (YAML or a dict)::

    name: release-gate            # optional
    rules:
      - metric: fid
        max: 25.0                 # fail when fid > 25
      - metric: recall
        min: 0.6
        on: ci_high               # judge the interval's upper end: fail only if even it is below 0.6
      - metric: memorization_rate
        max: 0.02
        tier: warn                # warn | fail (default fail)

A rule with both ``min`` and ``max`` checks both. ``on`` is ``value`` (default), ``ci_low`` or ``ci_high``.
A rule naming a metric the audit does not compute is an error (never a silent pass), and so is a rule on
an interval when no interval was computed (``--bootstrap 0``). Unknown names (metrics, rule keys) are
errors that say what was probably meant.

The noise floor: when the audit has a holdout, each rule is also applied to the holdout's value of its
metric (fresh real data, the ``baseline``). A rule that fresh real data fails cannot tell good synthetic
data from bad, so the verdict says so (``noise_floor`` on the rule's outcome, and ``noise_floor`` in the
verdict: "this rule fails fresh real data: mode_coverage holdout 0.8 < 0.9"). It does not change the
outcome: the rule is the policy owner's to fix.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from auditor.errors import DatasetNotFoundError, PolicyError, describe_validation_error
from auditor.metrics import METRICS


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    min: float | None = None
    max: float | None = None
    on: Literal["value", "ci_low", "ci_high"] = "value"
    tier: Literal["warn", "fail"] = "fail"
    message: str | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Rule:
        if self.min is None and self.max is None:
            raise ValueError(f"rule on {self.metric!r} needs 'min' and/or 'max'")
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}{did_you_mean(self.metric, METRICS)}")
        return self


def did_you_mean(name: str, known: object) -> str:
    """``"; did you mean 'fid'?"`` for a close match among ``known`` names, else the list of them."""
    names = sorted(str(k) for k in known)  # type: ignore[attr-defined]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(names)}"


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    rules: list[Rule] = Field(min_length=1)

    @classmethod
    def from_dict(cls, data: Any) -> Policy:
        if isinstance(data, dict):
            unknown = sorted(set(map(str, data)) - set(cls.model_fields))
            if unknown:
                raise PolicyError(
                    f"policy: unknown key {unknown[0]!r}{did_you_mean(unknown[0], cls.model_fields)}"
                )
        if isinstance(data, dict) and isinstance(data.get("rules"), list):
            for position, rule in enumerate(data["rules"]):
                keys = (
                    {("on" if key is True else str(key)) for key in rule} if isinstance(rule, dict) else set()
                )
                unknown = sorted(keys - set(Rule.model_fields))
                if unknown:
                    raise PolicyError(
                        f"policy.rules[{position}]: unknown key {unknown[0]!r}"
                        f"{did_you_mean(unknown[0], Rule.model_fields)}"
                    )
            # YAML 1.1 reads the bare key `on:` as the boolean True; give it its name back.
            data = {
                **data,
                "rules": [
                    {("on" if key is True else key): value for key, value in rule.items()}
                    if isinstance(rule, dict)
                    else rule
                    for rule in data["rules"]
                ],
            }
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PolicyError(
                f"invalid policy: {describe_validation_error(exc, root='policy')}",
                details={"errors": exc.errors(include_url=False)},
            ) from exc

    @classmethod
    def from_yaml(cls, path: Path) -> Policy:
        if not path.exists():
            raise DatasetNotFoundError(f"policy file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise PolicyError(f"{path}: not valid YAML ({exc})") from exc
        return cls.from_dict(data)

    def check_applicable(self, metrics: tuple[str, ...], bootstrap: bool) -> None:
        """Fail before any heavy work if the audit cannot produce what a rule reads."""
        missing = sorted({r.metric for r in self.rules} - set(metrics))
        if missing:
            raise PolicyError(
                f"the policy has rules on {missing}, which this audit does not compute; "
                "add them to the audit's metrics or remove the rules",
                details={"missing_metrics": missing},
            )
        on_ci = sorted({r.metric for r in self.rules if r.on != "value"})
        if on_ci and not bootstrap:
            raise PolicyError(
                f"rules on {on_ci} read confidence intervals, but bootstrap is off (--bootstrap 0)",
                details={"metrics": on_ci},
            )


def evaluate_policy(policy: Policy, metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The verdict: every rule with its observed value, threshold, tier and outcome."""
    outcomes = []
    for rule in policy.rules:
        if rule.metric not in metrics:
            raise PolicyError(f"policy rule on {rule.metric!r}, which was not computed")
        observed = metrics[rule.metric].get(rule.on)
        for bound, threshold in (("min", rule.min), ("max", rule.max)):
            if threshold is None:
                continue
            if observed is None or (isinstance(observed, float) and math.isnan(observed)):
                raise PolicyError(f"policy rule on {rule.metric}.{rule.on}: no value was computed")
            violated = observed < threshold if bound == "min" else observed > threshold
            outcome = rule.tier if violated else "pass"
            relation = ("<" if bound == "min" else ">") if violated else (">=" if bound == "min" else "<=")
            message = rule.message or f"{rule.metric}.{rule.on} = {observed:.6g} {relation} {threshold:.6g}"
            entry = {
                "metric": rule.metric,
                "on": rule.on,
                "bound": bound,
                "threshold": threshold,
                "observed": observed,
                "tier": rule.tier,
                "outcome": outcome,
                "message": message,
            }
            floor = _noise_floor(rule.metric, bound, threshold, metrics[rule.metric].get("baseline"))
            if floor is not None:
                entry["noise_floor"] = floor
            outcomes.append(entry)
    failed = sum(o["outcome"] == "fail" for o in outcomes)
    warned = sum(o["outcome"] == "warn" for o in outcomes)
    return {
        "passed": failed == 0,
        "policy": policy.name,
        "failed": failed,
        "warned": warned,
        "rules": outcomes,
        "noise_floor": [
            o["noise_floor"]["message"] for o in outcomes if o.get("noise_floor", {}).get("fails")
        ],
    }


def _noise_floor(metric: str, bound: str, threshold: float, baseline: object) -> dict[str, Any] | None:
    """The rule applied to the holdout's value (fresh real data); None without a holdout."""
    if not isinstance(baseline, int | float) or isinstance(baseline, bool) or math.isnan(baseline):
        return None
    fails = baseline < threshold if bound == "min" else baseline > threshold
    relation = ("<" if bound == "min" else ">") if fails else (">=" if bound == "min" else "<=")
    message = f"{metric} holdout {baseline:.4g} {relation} {threshold:.4g}"
    if fails:
        message = f"this rule fails fresh real data: {message}"
    return {"baseline": float(baseline), "fails": fails, "message": message}


def no_policy_verdict() -> dict[str, Any]:
    return {"passed": None, "policy": None, "failed": 0, "warned": 0, "rules": [], "noise_floor": []}
