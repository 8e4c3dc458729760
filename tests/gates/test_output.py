"""The gate's outputs for CI systems: readable text, JSON, schema-valid JUnit, Markdown, GitHub commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import junitparser
import pytest
import xmlschema

from auditor.gates.output import FORMATS, GateOutcome, append_step_summary, render, render_junit, rule_name
from auditor.policy import Policy, evaluate_policy

SCHEMA = xmlschema.XMLSchema(str(Path(__file__).with_name("junit.xsd")))
LONG_MESSAGE = "fid is far above what the release gate allows: " + "x" * 300


def metrics() -> dict[str, dict[str, Any]]:
    return {
        "fid": {"value": 31.25, "ci_low": 29.0, "ci_high": 33.5, "baseline": 2.0},
        "recall": {"value": 0.71, "ci_low": 0.65, "ci_high": 0.77, "baseline": 0.95},
        "memorization_rate": {"value": 0.04, "ci_low": 0.03, "ci_high": 0.05, "baseline": 0.0},
    }


def audit(state: str = "succeeded", rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    policy = Policy.from_dict(
        {
            "name": "release-gate",
            "rules": rules
            or [
                {"metric": "fid", "max": 25.0, "message": LONG_MESSAGE},
                {"metric": "recall", "min": 0.6, "on": "ci_high"},
                {"metric": "memorization_rate", "max": 0.02, "tier": "warn"},
            ],
        }
    )
    verdict = evaluate_policy(policy, metrics())
    document = {
        "project": "vision",
        "created_at": "2026-12-01T10:00:00+00:00",
        "protocol": {"fingerprint": "0123456789abcdef"},
        "verdict": verdict,
    }
    if state != "succeeded":
        return {
            "id": "a" * 32,
            "state": state,
            "project": "vision",
            "passed": None,
            "result": None,
            "error": {"code": "dimension_mismatch", "message": "feature dimensions differ: <64> & 32"},
        }
    return {
        "id": "a" * 32,
        "state": state,
        "project": "vision",
        "passed": verdict["passed"],
        "result": document,
    }


def test_exit_codes_follow_the_verdict_and_the_state() -> None:
    assert GateOutcome.from_audit(audit()).exit_code == 1
    passing = audit(rules=[{"metric": "recall", "min": 0.5}])
    assert GateOutcome.from_audit(passing).exit_code == 0
    assert GateOutcome.from_audit(audit("failed")).exit_code == 2
    assert GateOutcome.from_audit(audit("cancelled")).exit_code == 2


def test_text_is_a_table_without_dict_reprs_or_truncation() -> None:
    text = render(GateOutcome.from_audit(audit()), "text")
    assert "{" not in text and "'metric'" not in text
    assert LONG_MESSAGE in text  # whole, on one line
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("outcome"))
    rows = [line for line in lines if line.split(" ")[0] in ("PASS", "WARN", "FAIL")]
    assert [row.split()[0] for row in rows] == ["FAIL", "PASS", "WARN"]
    # Columns line up: each row's rule starts where the header's does.
    column = header.index("rule")
    assert {row[column:].split("  ")[0] for row in rows} == {
        "fid <= 25",
        "recall.ci_high >= 0.6",
        "memorization_rate <= 0.02",
    }
    assert lines[-1] == f"{'a' * 32} succeeded gate=fail"
    assert "FAILED: 1 failed, 1 warned, 3 checks" in text


def test_json_round_trips_the_outcome() -> None:
    document = json.loads(render(GateOutcome.from_audit(audit()), "json"))
    assert document["verdict"] == "fail" and document["exit_code"] == 1
    assert document["counts"] == {"pass": 1, "warn": 1, "fail": 1, "waived": 0}
    assert [rule["metric"] for rule in document["rules"]] == ["fid", "recall", "memorization_rate"]


@pytest.mark.parametrize("state", ["succeeded", "failed"])
def test_junit_is_valid_against_the_schema_and_reads_back(tmp_path: Path, state: str) -> None:
    xml = render_junit(GateOutcome.from_audit(audit(state)))
    SCHEMA.validate(xml)  # raises with the offending element on failure
    path = tmp_path / "gate.xml"
    path.write_text(xml)
    suites = junitparser.JUnitXml.fromfile(str(path))
    cases = [case for suite in suites for case in suite]
    if state == "succeeded":
        assert [case.name for case in cases] == [
            "fid <= 25",
            "recall.ci_high >= 0.6",
            "memorization_rate <= 0.02",
        ]
        fid, recall, memorization = cases
        assert isinstance(fid.result[0], junitparser.Failure) and fid.result[0].message == LONG_MESSAGE
        assert recall.is_passed and memorization.is_passed  # a warning does not fail the build
        assert "WARN" in (memorization.system_out or "")
        assert suites.failures == 1 and suites.errors == 0 and suites.tests == 3
    else:
        (case,) = cases
        assert isinstance(case.result[0], junitparser.Error)
        assert case.result[0].type == "dimension_mismatch"
        assert "<64> & 32" in case.result[0].message  # escaped in the XML, intact when read
        assert suites.errors == 1


def test_junit_without_a_policy_is_one_passing_case() -> None:
    outcome = GateOutcome(audit_id="b" * 32, state="succeeded", passed=None)
    xml = render_junit(outcome)
    SCHEMA.validate(xml)
    assert "no policy" in xml and outcome.exit_code == 0


def test_markdown_has_a_heading_and_an_escaped_table() -> None:
    rules = [{"metric": "fid", "max": 25.0, "message": "a | b"}]
    markdown = render(GateOutcome.from_audit(audit(rules=rules)), "markdown")
    assert markdown.startswith("### auditor gate: FAILED")
    assert "| **FAIL** | fail | `fid <= 25` | 31.25 | a \\| b |" in markdown


def test_github_writes_annotations_and_the_step_summary(tmp_path: Path) -> None:
    outcome = GateOutcome.from_audit(
        audit(rules=[{"metric": "fid", "max": 25.0, "message": "100% off,\nsee"}])
    )
    text = render(outcome, "github")
    assert text.splitlines()[0] == "::error title=auditor gate%3A fid <= 25::100%25 off,%0Asee"
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    assert append_step_summary(outcome, {"GITHUB_STEP_SUMMARY": str(summary)}) == summary
    assert summary.read_text().startswith("earlier step\n### auditor gate: FAILED")
    assert append_step_summary(outcome, {}) is None


def test_every_format_renders_every_state() -> None:
    for state in ("succeeded", "failed", "cancelled"):
        outcome = GateOutcome.from_audit(audit(state))
        for fmt in FORMATS:
            assert render(outcome, fmt).endswith("\n")


def test_rule_names_say_what_the_rule_requires() -> None:
    assert (
        rule_name({"metric": "kid", "on": "ci_low", "bound": "min", "threshold": 1e-5})
        == "kid.ci_low >= 1e-05"
    )


def test_a_rule_fresh_real_data_fails_is_called_out_in_every_format() -> None:
    outcome = GateOutcome.from_audit(audit(rules=[{"metric": "recall", "min": 0.97, "on": "ci_high"}]))
    note = "this rule fails fresh real data: recall holdout 0.95 < 0.97"
    assert outcome.noise_floor == (note,)
    assert f"noise floor: {note}" in render(outcome, "text")
    assert f"> **Noise floor:** {note}" in render(outcome, "markdown")
    assert f"::warning title=auditor gate%3A noise floor::{note}" in render(outcome, "github")
    junit = render(outcome, "junit")
    SCHEMA.validate(junit)
    assert f"<system-err>{note.replace('<', '&lt;')}</system-err>" in junit
    assert json.loads(render(outcome, "json"))["noise_floor"] == [note]
