"""The gate's verdict for CI systems: text, JSON, JUnit XML, Markdown and GitHub Actions.

One :class:`GateOutcome` (an audit as the API returns it: id, state, verdict, error) rendered five ways:

- ``text``: a plain table, one line per rule, never truncated or wrapped (CI logs are not terminals), and
  the summary line ``<id> <state> gate=<pass|fail|error>`` last;
- ``json``: the outcome as one document (exit code included);
- ``junit``: one ``<testcase>`` per rule check (Jenkins, GitLab): a failed rule is a ``<failure>``, a
  warning passes with its message in ``<system-out>``, an audit that did not succeed is one ``<error>``;
- ``markdown``: a heading and a table, for pull-request comments;
- ``github``: workflow commands (``::error`` / ``::warning`` annotations), then the text table; the
  Markdown is appended to ``$GITHUB_STEP_SUMMARY`` when that is set.

Light on purpose (standard library only): ``auditor gate`` runs in pipeline loops.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GATE_PASSED, GATE_FAILED, GATE_ERROR = 0, 1, 2
FORMATS = ("text", "json", "junit", "markdown", "github")
_VERDICT_WORD = {GATE_PASSED: "pass", GATE_FAILED: "fail", GATE_ERROR: "error"}
_BOUND_SIGN = {"min": ">=", "max": "<="}


@dataclass(frozen=True)
class GateOutcome:
    """What the gate decided about one audit."""

    audit_id: str
    state: str  # queued | running | succeeded | failed | cancelled
    project: str | None = None
    policy: str | None = None
    passed: bool | None = None  # None: no policy (or no result)
    rules: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    error: Mapping[str, Any] | None = None  # {"code", "message"} when the audit did not succeed
    created_at: str | None = None
    protocol: str | None = None
    noise_floor: Sequence[str] = field(default_factory=tuple)  # rules that fresh real data fails

    @classmethod
    def from_audit(cls, audit: Mapping[str, Any]) -> GateOutcome:
        """From an audit as ``GET /v1/audits/{id}`` returns it (``result`` is the result document)."""
        document = audit.get("result") or {}
        verdict = document.get("verdict") or {}
        return cls(
            audit_id=str(audit["id"]),
            state=str(audit["state"]),
            project=audit.get("project") or document.get("project"),
            policy=verdict.get("policy"),
            passed=audit.get("passed", verdict.get("passed")),
            rules=tuple(verdict.get("rules") or ()),
            error=audit.get("error"),
            created_at=audit.get("created_at") or document.get("created_at"),
            protocol=(document.get("protocol") or {}).get("fingerprint"),
            noise_floor=tuple(verdict.get("noise_floor") or ()),
        )

    @property
    def exit_code(self) -> int:
        if self.state != "succeeded":
            return GATE_ERROR
        return GATE_FAILED if self.passed is False else GATE_PASSED

    @property
    def verdict(self) -> str:
        return _VERDICT_WORD[self.exit_code]

    def counts(self) -> dict[str, int]:
        outcomes = [rule.get("outcome") for rule in self.rules]
        return {name: outcomes.count(name) for name in ("pass", "warn", "fail", "waived")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit_id": self.audit_id,
            "state": self.state,
            "project": self.project,
            "policy": self.policy,
            "passed": self.passed,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "counts": self.counts(),
            "rules": [dict(rule) for rule in self.rules],
            "error": dict(self.error) if self.error else None,
            "noise_floor": list(self.noise_floor),
        }


def _number(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return f"{value:.6g}"
    return str(value)


def rule_name(rule: Mapping[str, Any]) -> str:
    """``fid <= 25`` / ``recall.ci_high >= 0.6`` / ``fid vs parent: increase <= 10%, beyond noise``: what
    the rule requires."""
    baseline = rule.get("baseline")
    if isinstance(baseline, Mapping):
        word = "increase" if rule.get("bound") == "max_increase" else "decrease"
        limit = rule.get("limit", rule.get("threshold"))
        limit_text = limit if isinstance(limit, str) else _number(limit)
        beyond = ", beyond noise" if rule.get("noise") is not None else ""
        return f"{rule['metric']} vs {baseline.get('source')}: {word} <= {limit_text}{beyond}"
    on = rule.get("on") or "value"
    subject = rule["metric"] if on == "value" else f"{rule['metric']}.{on}"
    return f"{subject} {_BOUND_SIGN.get(str(rule.get('bound')), '?')} {_number(rule.get('threshold'))}"


def _headline(outcome: GateOutcome) -> str:
    if outcome.state != "succeeded":
        return f"ERROR: the audit {outcome.state}"
    if outcome.passed is None:
        return "PASSED (no policy)"
    counts = outcome.counts()
    word = "FAILED" if outcome.passed is False else "PASSED"
    waived = f", {counts['waived']} waived" if counts["waived"] else ""
    return f"{word}: {counts['fail']} failed, {counts['warn']} warned{waived}, {len(outcome.rules)} checks"


def rule_message(rule: Mapping[str, Any]) -> str:
    """The rule's message, and for a waived rule the waiver's reason, author and expiry."""
    message = str(rule.get("message", ""))
    waiver = rule.get("waiver")
    if rule.get("outcome") == "waived" and isinstance(waiver, Mapping):
        until = str(waiver.get("expires_at") or "")[:10]
        message += (
            f" [WAIVED ({rule.get('waived_from')}) by {waiver.get('created_by')} until {until}: "
            f"{waiver.get('reason')}]"
        )
    return message


def _error_text(outcome: GateOutcome) -> str:
    error = outcome.error or {}
    return f"[{error.get('code', outcome.state)}] {error.get('message', 'the audit did not succeed')}"


def render_text(outcome: GateOutcome) -> str:
    lines = [
        f"audit {outcome.audit_id}  project {outcome.project or '-'}  state {outcome.state}  "
        f"policy {outcome.policy or '-'}",
        f"gate {_headline(outcome)}",
    ]
    if outcome.state != "succeeded":
        lines.append(f"error {_error_text(outcome)}")
    if outcome.rules:
        head = ("outcome", "tier", "rule", "observed", "message")
        rows = [
            (
                str(rule.get("outcome", "")).upper(),
                str(rule.get("tier", "")),
                rule_name(rule),
                _number(rule.get("observed")),
                rule_message(rule),
            )
            for rule in outcome.rules
        ]
        widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head) - 1)]
        lines.append("")
        for row in (head, *rows):
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            lines.append("  ".join([*cells, row[-1]]).rstrip())
    if outcome.noise_floor:
        lines.append("")
        lines += [f"noise floor: {note}" for note in outcome.noise_floor]
    lines.append("")
    lines.append(f"{outcome.audit_id} {outcome.state} gate={outcome.verdict}")
    return "\n".join(lines) + "\n"


def render_json(outcome: GateOutcome) -> str:
    return json.dumps(outcome.to_dict(), indent=2, default=str) + "\n"


def render_junit(outcome: GateOutcome) -> str:
    counts = outcome.counts()
    failures = counts["fail"]
    errors = 0 if outcome.state == "succeeded" else 1
    tests = max(1, len(outcome.rules)) if outcome.state == "succeeded" else 1
    skipped = counts["waived"] if outcome.state == "succeeded" else 0
    totals = {"tests": str(tests), "failures": str(failures), "errors": str(errors), "skipped": str(skipped)}
    suites = ET.Element("testsuites", {"name": "auditor gate", **totals})
    suite_name = f"audit {outcome.audit_id}" + (f" ({outcome.policy})" if outcome.policy else "")
    suite = ET.SubElement(suites, "testsuite", {"name": suite_name, **totals})
    if outcome.created_at:
        suite.set("timestamp", str(outcome.created_at)[:19])
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("audit_id", outcome.audit_id),
        ("project", outcome.project),
        ("state", outcome.state),
        ("policy", outcome.policy),
        ("protocol", outcome.protocol),
    ):
        if value:
            ET.SubElement(properties, "property", {"name": name, "value": str(value)})
    classname = f"auditor.{outcome.policy or 'gate'}"
    if outcome.state != "succeeded":
        case = ET.SubElement(suite, "testcase", {"classname": classname, "name": "audit", "time": "0"})
        error = outcome.error or {}
        ET.SubElement(
            case, "error", {"message": _error_text(outcome), "type": str(error.get("code", outcome.state))}
        ).text = _error_text(outcome)
    elif not outcome.rules:
        case = ET.SubElement(suite, "testcase", {"classname": classname, "name": "verdict", "time": "0"})
        ET.SubElement(case, "system-out").text = "no policy: nothing to gate on"
    for rule in outcome.rules if outcome.state == "succeeded" else ():
        case = ET.SubElement(
            suite, "testcase", {"classname": classname, "name": rule_name(rule), "time": "0"}
        )
        message = str(rule.get("message", ""))
        if rule.get("outcome") == "fail":
            ET.SubElement(
                case, "failure", {"message": message, "type": "gate.fail"}
            ).text = f"{message} (tier {rule.get('tier')}, observed {_number(rule.get('observed'))})"
        elif rule.get("outcome") == "warn":
            ET.SubElement(case, "system-out").text = f"WARN: {message}"
        elif rule.get("outcome") == "waived":
            ET.SubElement(case, "skipped", {"message": rule_message(rule)})
        floor = rule.get("noise_floor") or {}
        if floor.get("fails"):
            ET.SubElement(case, "system-err").text = str(floor.get("message"))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(outcome: GateOutcome) -> str:
    lines = [
        f"### auditor gate: {_headline(outcome)}",
        "",
        f"Audit `{outcome.audit_id}` · project `{outcome.project or '-'}` · policy "
        f"`{outcome.policy or '-'}` · state `{outcome.state}`",
    ]
    if outcome.state != "succeeded":
        lines += ["", f"**Error** {_md_cell(_error_text(outcome))}"]
    if outcome.rules:
        lines += ["", "| outcome | tier | rule | observed | message |", "|---|---|---|---:|---|"]
        for rule in outcome.rules:
            word = str(rule.get("outcome", ""))
            shown = f"**{word.upper()}**" if word in ("fail", "warn", "waived") else word.upper()
            lines.append(
                f"| {shown} | {rule.get('tier', '')} | `{_md_cell(rule_name(rule))}` | "
                f"{_number(rule.get('observed'))} | {_md_cell(rule_message(rule))} |"
            )
    if outcome.noise_floor:
        lines += ["", *(f"> **Noise floor:** {_md_cell(note)}" for note in outcome.noise_floor)]
    return "\n".join(lines) + "\n"


def _command_data(text: str) -> str:
    # GitHub workflow commands: the data part escapes %, CR, LF; properties also ':' and ','.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _command_property(text: str) -> str:
    return _command_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(outcome: GateOutcome) -> str:
    lines = []
    if outcome.state != "succeeded":
        title = _command_property(f"auditor gate: audit {outcome.state}")
        lines.append(f"::error title={title}::{_command_data(_error_text(outcome))}")
    for rule in outcome.rules:
        level = {"fail": "error", "warn": "warning", "waived": "notice"}.get(str(rule.get("outcome")))
        if level:
            title = _command_property(f"auditor gate: {rule_name(rule)}")
            lines.append(f"::{level} title={title}::{_command_data(rule_message(rule))}")
    for note in outcome.noise_floor:
        lines.append(
            f"::warning title={_command_property('auditor gate: noise floor')}::{_command_data(note)}"
        )
    return "\n".join(lines) + ("\n" if lines else "") + render_text(outcome)


RENDERERS: dict[str, Callable[[GateOutcome], str]] = {
    "text": render_text,
    "json": render_json,
    "junit": render_junit,
    "markdown": render_markdown,
    "github": render_github,
}


def render(outcome: GateOutcome, fmt: str) -> str:
    return RENDERERS[fmt](outcome)


def append_step_summary(outcome: GateOutcome, environ: Mapping[str, str] | None = None) -> Path | None:
    """With ``$GITHUB_STEP_SUMMARY`` set, append the Markdown there; returns the file written, if any."""
    target = (environ if environ is not None else os.environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as summary:
        summary.write(render_markdown(outcome) + "\n")
    return path
