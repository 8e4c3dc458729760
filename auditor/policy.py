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

Relative rules compare the metric with a baseline instead of a fixed number::

      - metric: fid
        baseline: parent          # parent | last_passed | holdout | audit:<id>
        max_increase: 10%         # at most 10% above the parent generation's fid (or absolute: 0.05)
      - metric: mode_coverage
        baseline: parent
        beyond: noise             # fail only when the drop exceeds what sampling noise explains

``parent`` is the audit's lineage parent, ``last_passed`` the project's most recent audit that passed its
gate, ``audit:<id>`` a named audit of the same project (each read from the audit history when the audit
is submitted, and recorded in the verdict), ``holdout`` the audit's own holdout value (fresh real data).
``max_increase`` / ``max_decrease`` bound the change in that direction, absolute or relative (``10%`` of
the baseline's magnitude); with ``beyond: noise`` and neither, the metric's bad direction with limit 0.

``beyond: noise`` (the early warning for model collapse): the change must also exceed the sampling noise
of the difference, sqrt(h_audit^2 + h_baseline^2) with h the half-width of each bootstrap interval (at
the audit's confidence). For independent, roughly normal estimates that is a test of the difference at
the interval's level: a one-sided false alarm rate at most (1 - confidence) / 2. Measured on real-vs-real
splits (bench/RESULTS_gates.md) it holds for most metrics, not for coverage, duplicate_rate and vendi,
whose intervals resample one side only (they miss the noise a new synthetic set brings). A holdout
value has no interval of its own; it is taken to be as noisy as the audit's (the same estimator at the
same N), h_baseline = h_audit. Metrics that are shares of
samples (precision, recall, coverage, tail_recall, duplicate_rate, memorization_rate, authenticity,
mode_coverage) have a floor under h: a percentile bootstrap of a share near 0 or 1 collapses to a
zero-width interval (no resample of 600 samples with no duplicate holds one), which would make any
change "beyond noise"; the floor is the Agresti-Coull half-width z sqrt(p~(1 - p~) / n~) of that share,
with n the number of samples (or modes) it is a share of.
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
import re
from collections.abc import Mapping
from pathlib import Path
from statistics import NormalDist
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
    baseline: str | None = None  # parent | last_passed | holdout | audit:<id>
    max_increase: float | str | None = None  # absolute, or "10%" of the baseline's magnitude
    max_decrease: float | str | None = None
    beyond: Literal["noise"] | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Rule:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}{did_you_mean(self.metric, METRICS)}")
        relative = (self.max_increase, self.max_decrease, self.beyond)
        if self.baseline is None:
            if any(value is not None for value in relative):
                raise ValueError(
                    f"rule on {self.metric!r}: max_increase, max_decrease and beyond need a baseline"
                )
            if self.min is None and self.max is None:
                raise ValueError(f"rule on {self.metric!r} needs 'min' and/or 'max' (or a baseline)")
            return self
        baseline_source(self.baseline)  # raises on a bad name
        if self.min is not None or self.max is not None:
            raise ValueError(
                f"rule on {self.metric!r}: a rule compares with a baseline or with min/max, not both "
                "(write two rules)"
            )
        if self.on != "value":
            raise ValueError(f"rule on {self.metric!r}: a baseline rule compares values (on: value)")
        if self.max_increase is None and self.max_decrease is None and self.beyond is None:
            raise ValueError(
                f"rule on {self.metric!r}: a baseline rule needs max_increase, max_decrease or beyond"
            )
        for limit in (self.max_increase, self.max_decrease):
            if limit is not None:
                parse_limit(limit)
        return self

    @property
    def is_relative(self) -> bool:
        return self.baseline is not None

    def limits(self) -> list[tuple[str, float | str]]:
        """(direction, limit) pairs: explicit ones, else the metric's bad direction with limit 0."""
        pairs = [
            (name, value)
            for name, value in (("max_increase", self.max_increase), ("max_decrease", self.max_decrease))
            if value is not None
        ]
        if pairs:
            return pairs
        return [("max_decrease" if METRICS[self.metric].higher_is_better else "max_increase", 0.0)]


BASELINE_SOURCES = ("parent", "last_passed", "holdout")
_AUDIT_ID = re.compile(r"^[0-9a-f]{6,32}$")


def baseline_source(name: str) -> tuple[str, str | None]:
    """``("audit", "7f0c...")`` for ``audit:<id>``, else ``(name, None)``; PolicyError-free ValueError."""
    kind, _, audit_id = name.partition(":")
    if kind == "audit" and _AUDIT_ID.match(audit_id.lower()):
        return "audit", audit_id.lower()
    if name in BASELINE_SOURCES:
        return name, None
    raise ValueError(
        f"unknown baseline {name!r}{did_you_mean(name, (*BASELINE_SOURCES, 'audit:<id>'))}"
        if kind != "audit"
        else f"baseline {name!r}: audit:<id> takes an audit id (6 to 32 hex characters)"
    )


def parse_limit(limit: float | str) -> tuple[float, bool]:
    """(amount, relative): ``0.05`` -> (0.05, False), ``"10%"`` -> (0.1, True); never negative."""
    if isinstance(limit, str):
        text = limit.strip()
        try:
            amount, relative = (float(text[:-1]) / 100, True) if text.endswith("%") else (float(text), False)
        except ValueError:
            raise ValueError(f"limit {limit!r} is neither a number nor a percentage like '10%'") from None
    else:
        amount, relative = float(limit), False
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"limit {limit!r} must be a finite, non-negative amount")
    return amount, relative


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

    def baseline_names(self) -> list[str]:
        """The history baselines the rules read (``parent``, ``last_passed``, ``audit:<id>``), in order."""
        names = [r.baseline for r in self.rules if r.baseline is not None and r.baseline != "holdout"]
        return list(dict.fromkeys(names))

    def check_applicable(
        self,
        metrics: tuple[str, ...],
        bootstrap: bool,
        *,
        has_holdout: bool | None = None,
        has_parent: bool | None = None,
    ) -> None:
        """Fail before any heavy work if the audit cannot produce what a rule reads (``None``: not
        known here, checked where it is)."""
        missing = sorted({r.metric for r in self.rules} - set(metrics))
        if missing:
            raise PolicyError(
                f"the policy has rules on {missing}, which this audit does not compute; "
                "add them to the audit's metrics or remove the rules",
                details={"missing_metrics": missing},
            )
        on_ci = sorted({r.metric for r in self.rules if r.on != "value" or r.beyond == "noise"})
        if on_ci and not bootstrap:
            raise PolicyError(
                f"rules on {on_ci} read confidence intervals, but bootstrap is off (--bootstrap 0)",
                details={"metrics": on_ci},
            )
        on_holdout = sorted({r.metric for r in self.rules if r.baseline == "holdout"})
        if on_holdout and has_holdout is False:
            raise PolicyError(
                f"rules on {on_holdout} compare with the holdout, but the audit has none (--holdout)",
                details={"metrics": on_holdout},
            )
        on_parent = sorted({r.metric for r in self.rules if r.baseline == "parent"})
        if on_parent and has_parent is False:
            raise PolicyError(
                f"rules on {on_parent} compare with the parent audit, but the audit has none (--parent)",
                details={"metrics": on_parent},
            )


# Metrics that are a share of samples (or of modes), and of which: the count behind the noise floor.
SHARE_OF = {
    "precision": "synthetic",
    "duplicate_rate": "synthetic",
    "memorization_rate": "synthetic",
    "authenticity": "synthetic",
    "recall": "real",
    "coverage": "real",
    "tail_recall": "tail",
    "mode_coverage": "modes",
}


def sample_sizes(document: Mapping[str, Any], side: str = "synthetic") -> dict[str, int]:
    """The counts behind each share metric of a result document (``side``: the one scored against real)."""
    real_n = int((document.get("real") or {}).get("n") or 0)
    params = document.get("params") or {}
    sizes = {
        "synthetic": int((document.get(side) or {}).get("n") or 0),
        "real": real_n,
        "tail": max(1, math.ceil(float(params.get("tail_fraction", 0.1)) * real_n)) if real_n else 0,
        "modes": int((document.get("details") or {}).get("num_modes") or 0),
    }
    return {name: count for name, count in sizes.items() if count > 0}


def _share_floor(metric: str, value: float, sizes: Mapping[str, int], z: float) -> float:
    count = sizes.get(SHARE_OF.get(metric, ""), 0)
    if count <= 0 or not 0.0 <= value <= 1.0:
        return 0.0
    n_tilde = count + z * z
    p_tilde = (value * count + z * z / 2) / n_tilde
    return z * math.sqrt(p_tilde * (1 - p_tilde) / n_tilde)


def _half_width(
    metric: str, entry: Mapping[str, Any], sizes: Mapping[str, int] | None = None, z: float = 1.96
) -> float | None:
    low, high, value = entry.get("ci_low"), entry.get("ci_high"), entry.get("value")
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None
    width = (float(high) - float(low)) / 2
    if not math.isfinite(width):
        return None
    if sizes and isinstance(value, int | float) and math.isfinite(value):
        width = max(width, _share_floor(metric, float(value), sizes, z))
    return width


def finite_number(value: object) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _relative_outcomes(
    rule: Rule,
    metrics: Mapping[str, Mapping[str, Any]],
    baselines: Mapping[str, Mapping[str, Any]],
    sizes: Mapping[str, Mapping[str, int]],
    z: float,
) -> list[dict[str, Any]]:
    """A baseline rule's checks: the change from the baseline against each limit (and the noise)."""
    entry = metrics[rule.metric]
    observed = finite_number(entry.get("value"))
    own_noise = _half_width(rule.metric, entry, sizes.get("audit"), z)
    assert rule.baseline is not None
    snapshot: Mapping[str, Any]
    if rule.baseline == "holdout":
        base_value = finite_number(entry.get("baseline"))
        # As noisy as the audit's own estimate, at the holdout's N.
        base_noise = own_noise
        if own_noise is not None and base_value is not None and sizes.get("holdout"):
            base_noise = max(own_noise, _share_floor(rule.metric, base_value, sizes["holdout"], z))
        snapshot = {"source": "holdout", "audit_id": None}
        if base_value is None:
            raise PolicyError(
                f"rule on {rule.metric} compares with the holdout, but no holdout value was computed"
            )
    else:
        if rule.baseline not in baselines:
            raise PolicyError(
                f"rule on {rule.metric} compares with {rule.baseline}, which was not resolved from the "
                "audit history (baselines other than holdout need it: give the audit a project and a "
                "database)"
            )
        snapshot = baselines[rule.baseline]
        base_entry = (snapshot.get("metrics") or {}).get(rule.metric)
        if base_entry is None or finite_number(base_entry.get("value")) is None:
            raise PolicyError(
                f"rule on {rule.metric} compares with {rule.baseline} (audit {snapshot.get('audit_id')}), "
                f"which has no {rule.metric}"
            )
        base_value = finite_number(base_entry.get("value"))
        base_noise = _half_width(rule.metric, base_entry, snapshot.get("sizes"), z)
    if observed is None or base_value is None:
        raise PolicyError(f"policy rule on {rule.metric}: no value was computed")
    noise = None
    if rule.beyond == "noise":
        if own_noise is None or base_noise is None:
            raise PolicyError(
                f"rule on {rule.metric} is beyond: noise, but an interval is missing (the audit's or "
                f"{rule.baseline}'s): the noise needs bootstrap on both"
            )
        noise = math.hypot(own_noise, base_noise)
    change = observed - base_value
    outcomes = []
    for direction, limit in rule.limits():
        amount, relative = parse_limit(limit)
        allowed = amount * abs(base_value) if relative else amount
        worse = change if direction == "max_increase" else -change
        violated = worse > allowed and (noise is None or worse > noise)
        word = "increase" if direction == "max_increase" else "decrease"
        percent = f" ({change / abs(base_value):+.1%})" if base_value else ""
        allowed_text = f"{limit} ({allowed:.4g})" if isinstance(limit, str) else f"{allowed:.4g}"
        message = rule.message or (
            f"{rule.metric} {observed:.4g} vs {rule.baseline} {base_value:.4g}: change "
            f"{change:+.4g}{percent}; allowed {word} {allowed_text}"
            + (f", noise {noise:.4g}" if noise is not None else "")
            + (": beyond" if violated else ": within")
        )
        outcomes.append(
            {
                "metric": rule.metric,
                "on": "value",
                "bound": direction,
                "threshold": allowed,
                "limit": limit,
                "observed": observed,
                "baseline": {
                    "source": rule.baseline,
                    "audit_id": snapshot.get("audit_id"),
                    "value": base_value,
                    "half_width": base_noise,
                },
                "change": change,
                "noise": noise,
                "tier": rule.tier,
                "outcome": rule.tier if violated else "pass",
                "message": message,
            }
        )
    return outcomes


def evaluate_policy(
    policy: Policy,
    metrics: dict[str, dict[str, Any]],
    baselines: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    sizes: Mapping[str, Mapping[str, int]] | None = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The verdict: every rule with its observed value, threshold, tier and outcome.

    ``baselines``: the history baselines the rules name (:meth:`Policy.baseline_names`), each
    ``{"source", "audit_id", "protocol", "sizes", "metrics": {name: {"value", "ci_low", "ci_high"}}}``;
    ``sizes``: :func:`sample_sizes` of the audit (``"audit"``) and of its holdout (``"holdout"``), for
    the share metrics' noise floor; ``confidence``: the intervals' level.
    """
    outcomes = []
    baselines = baselines or {}
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    for rule in policy.rules:
        if rule.metric not in metrics:
            raise PolicyError(f"policy rule on {rule.metric!r}, which was not computed")
        if rule.is_relative:
            outcomes.extend(_relative_outcomes(rule, metrics, baselines, sizes or {}, z))
            continue
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
        "baselines": {
            name: {key: snapshot.get(key) for key in ("source", "audit_id", "protocol")}
            for name, snapshot in baselines.items()
        },
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
    return {
        "passed": None,
        "policy": None,
        "failed": 0,
        "warned": 0,
        "rules": [],
        "noise_floor": [],
        "baselines": {},
    }
