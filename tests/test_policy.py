import re
from pathlib import Path

import pytest

from auditor.errors import PolicyError
from auditor.policy import Policy, evaluate_policy

METRICS = {
    "fid": {"value": 12.0, "ci_low": 10.0, "ci_high": 14.0},
    "recall": {"value": 0.55, "ci_low": 0.5, "ci_high": 0.62},
    "memorization_rate": {"value": 0.03, "ci_low": 0.02, "ci_high": 0.04},
}


def test_verdict_lists_every_rule_with_outcome() -> None:
    policy = Policy.from_dict(
        {
            "rules": [
                {"metric": "fid", "max": 10},
                {"metric": "recall", "min": 0.6, "on": "ci_high"},
                {"metric": "memorization_rate", "max": 0.02, "tier": "warn"},
            ]
        }
    )
    verdict = evaluate_policy(policy, METRICS)
    outcomes = [(r["metric"], r["on"], r["observed"], r["threshold"], r["outcome"]) for r in verdict["rules"]]
    assert outcomes == [
        ("fid", "value", 12.0, 10, "fail"),
        ("recall", "ci_high", 0.62, 0.6, "pass"),
        ("memorization_rate", "value", 0.03, 0.02, "warn"),
    ]
    assert verdict["passed"] is False and verdict["failed"] == 1 and verdict["warned"] == 1
    assert verdict["rules"][0]["message"] == "fid.value = 12 > 10"


def test_warn_only_policy_passes() -> None:
    policy = Policy.from_dict({"rules": [{"metric": "fid", "max": 1, "tier": "warn"}]})
    assert evaluate_policy(policy, METRICS)["passed"] is True


def test_min_and_max_in_one_rule() -> None:
    policy = Policy.from_dict({"rules": [{"metric": "recall", "min": 0.1, "max": 0.5}]})
    verdict = evaluate_policy(policy, METRICS)
    assert [r["outcome"] for r in verdict["rules"]] == ["pass", "fail"]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"rules": [{"metric": "fid"}]}, "needs 'min' and/or 'max'"),
        ({"rules": [{"metric": "fidd", "max": 1}]}, "unknown metric 'fidd'"),
        ({"rules": [{"metric": "fid", "max": 1, "on": "median"}]}, "rules.0.on"),
        ({"rules": []}, "rules"),
        ({"rules": [{"metric": "fid", "max": 1, "tier": "block"}]}, "tier"),
        ("just a string", "policy"),
    ],
)
def test_invalid_policies_are_clear_errors(data: object, match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        Policy.from_dict(data)


def test_rule_on_metric_not_computed_is_an_error_not_a_pass() -> None:
    policy = Policy.from_dict({"rules": [{"metric": "kid", "max": 0.01}]})
    with pytest.raises(PolicyError, match="does not compute"):
        policy.check_applicable(("fid", "recall"), bootstrap=True)
    with pytest.raises(PolicyError, match="not computed"):
        evaluate_policy(policy, METRICS)


def test_rule_on_interval_without_bootstrap_is_an_error() -> None:
    policy = Policy.from_dict({"rules": [{"metric": "fid", "max": 1, "on": "ci_high"}]})
    with pytest.raises(PolicyError, match="bootstrap is off"):
        policy.check_applicable(("fid",), bootstrap=False)


def test_yaml_loading(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("name: g\nrules:\n  - metric: fid\n    max: 5\n")
    assert Policy.from_yaml(tmp_path / "p.yaml").name == "g"
    (tmp_path / "bad.yaml").write_text("rules: [unclosed\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        Policy.from_yaml(tmp_path / "bad.yaml")


def test_yaml_on_key_is_not_read_as_boolean(tmp_path: Path) -> None:
    # YAML 1.1 turns a bare `on:` key into True; the policy must still read it as the rule's `on`.
    (tmp_path / "p.yaml").write_text("rules:\n  - metric: recall\n    min: 0.5\n    on: ci_high\n")
    assert Policy.from_yaml(tmp_path / "p.yaml").rules[0].on == "ci_high"


def test_a_rule_that_fresh_real_data_fails_is_reported_in_the_verdict() -> None:
    policy = Policy.from_dict(
        {"rules": [{"metric": "mode_coverage", "min": 0.9}, {"metric": "fid", "max": 5.0}]}
    )
    metrics = {
        "mode_coverage": {"value": 0.95, "ci_low": 0.9, "ci_high": 0.99, "baseline": 0.8},
        "fid": {"value": 1.0, "ci_low": 0.8, "ci_high": 1.2, "baseline": 0.5},
    }
    verdict = evaluate_policy(policy, metrics)
    assert verdict["passed"] is True  # the outcome is the rule's; the note is for its owner
    assert verdict["noise_floor"] == ["this rule fails fresh real data: mode_coverage holdout 0.8 < 0.9"]
    coverage, fid = verdict["rules"]
    assert coverage["noise_floor"] == {
        "baseline": 0.8,
        "fails": True,
        "message": "this rule fails fresh real data: mode_coverage holdout 0.8 < 0.9",
    }
    assert fid["noise_floor"]["fails"] is False
    without_holdout = evaluate_policy(policy, {k: {**v, "baseline": None} for k, v in metrics.items()})
    assert without_holdout["noise_floor"] == [] and "noise_floor" not in without_holdout["rules"][0]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"rules": [{"metric": "fidd", "max": 1}]}, "unknown metric 'fidd'; did you mean 'fid'?"),
        ({"rules": [{"metric": "fid", "mx": 1}]}, "policy.rules[0]: unknown key 'mx'; did you mean 'max'?"),
        ({"rule": [{"metric": "fid", "max": 1}]}, "policy: unknown key 'rule'; did you mean 'rules'?"),
        ({"rules": [{"metric": "zzz", "max": 1}]}, "unknown metric 'zzz'; known: authenticity, coverage"),
    ],
)
def test_unknown_names_say_what_was_meant(data: dict[str, object], expected: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(expected)):
        Policy.from_dict(data)
