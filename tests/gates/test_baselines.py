"""Relative and noise-aware rules: baselines from the history, the holdout, and the collapse warning."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.demo import build_demo_data
from auditor.errors import PolicyError
from auditor.gates.output import GateOutcome, render, rule_name
from auditor.pipeline.evaluate import MetricParams, evaluate
from auditor.policy import Policy, evaluate_policy, sample_sizes

COLLAPSE = ("mode_coverage", "mode_jsd", "tail_recall", "effective_rank_ratio", "coverage", "recall")


def snapshot(metrics: dict[str, Any], audit_id: str = "p" * 32) -> dict[str, Any]:
    return {"source": "parent", "audit_id": audit_id, "protocol": "f" * 16, "metrics": metrics}


def entry(value: float, half: float = 0.01, baseline: float | None = None) -> dict[str, Any]:
    return {"value": value, "ci_low": value - half, "ci_high": value + half, "baseline": baseline}


# --- the rules -------------------------------------------------------------------------------------------


def test_percent_and_absolute_limits_in_either_direction() -> None:
    policy = Policy.from_dict(
        {
            "rules": [
                {"metric": "fid", "baseline": "parent", "max_increase": "10%"},
                {"metric": "recall", "baseline": "parent", "max_decrease": 0.05},
            ]
        }
    )
    parent = snapshot({"fid": entry(0.20), "recall": entry(0.90)})
    within = evaluate_policy(policy, {"fid": entry(0.219), "recall": entry(0.86)}, {"parent": parent})
    assert within["passed"] is True
    beyond = evaluate_policy(policy, {"fid": entry(0.221), "recall": entry(0.84)}, {"parent": parent})
    assert [rule["outcome"] for rule in beyond["rules"]] == ["fail", "fail"]
    fid = beyond["rules"][0]
    assert fid["threshold"] == pytest.approx(0.02) and fid["change"] == pytest.approx(0.021)
    assert fid["baseline"] == {
        "source": "parent",
        "audit_id": "p" * 32,
        "value": 0.2,
        "half_width": pytest.approx(0.01),
    }
    assert (
        fid["message"]
        == "fid 0.221 vs parent 0.2: change +0.021 (+10.5%); allowed increase 10% (0.02): beyond"
    )
    assert rule_name(fid) == "fid vs parent: increase <= 10%"
    assert beyond["baselines"] == {"parent": {"source": "parent", "audit_id": "p" * 32, "protocol": "f" * 16}}


def test_beyond_noise_needs_the_change_to_exceed_the_combined_interval() -> None:
    policy = Policy.from_dict({"rules": [{"metric": "coverage", "baseline": "parent", "beyond": "noise"}]})
    parent = snapshot({"coverage": entry(0.80, half=0.03)})
    noise = float(np.hypot(0.03, 0.04))  # 0.05
    inside = evaluate_policy(policy, {"coverage": entry(0.80 - 0.049, half=0.04)}, {"parent": parent})
    outside = evaluate_policy(policy, {"coverage": entry(0.80 - 0.051, half=0.04)}, {"parent": parent})
    better = evaluate_policy(policy, {"coverage": entry(0.95, half=0.04)}, {"parent": parent})
    assert inside["passed"] and better["passed"] and not outside["passed"]
    rule = outside["rules"][0]
    assert rule["bound"] == "max_decrease" and rule["noise"] == pytest.approx(noise)
    assert rule_name(rule) == "coverage vs parent: decrease <= 0, beyond noise"
    # fid: lower is better, so the default direction is an increase.
    fid = Policy.from_dict({"rules": [{"metric": "fid", "baseline": "parent", "beyond": "noise"}]})
    worse = evaluate_policy(fid, {"fid": entry(0.5, 0.01)}, {"parent": snapshot({"fid": entry(0.4, 0.01)})})
    assert worse["rules"][0]["bound"] == "max_increase" and worse["passed"] is False


def test_the_holdout_baseline_takes_the_audits_own_noise() -> None:
    policy = Policy.from_dict({"rules": [{"metric": "precision", "baseline": "holdout", "beyond": "noise"}]})
    half = 0.02
    near = evaluate_policy(policy, {"precision": entry(0.95 - 0.028, half, baseline=0.95)})
    far = evaluate_policy(policy, {"precision": entry(0.95 - 0.029, half, baseline=0.95)})
    assert near["passed"] and not far["passed"]  # noise = sqrt(2) * 0.02 = 0.0283
    assert far["rules"][0]["baseline"]["source"] == "holdout"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"metric": "fid", "baseline": "parnt", "max_increase": 1}, "did you mean 'parent'?"),
        ({"metric": "fid", "baseline": "parent", "max": 1}, "not both"),
        ({"metric": "fid", "baseline": "parent"}, "needs max_increase, max_decrease or beyond"),
        (
            {"metric": "fid", "baseline": "parent", "max_increase": "ten%"},
            "neither a number nor a percentage",
        ),
        ({"metric": "fid", "baseline": "parent", "max_increase": -1}, "non-negative"),
        ({"metric": "fid", "max_increase": 1, "max": 3}, "need a baseline"),
        ({"metric": "fid", "baseline": "audit:xyz", "beyond": "noise"}, "takes an audit id"),
        ({"metric": "recall", "baseline": "holdout", "on": "ci_low", "beyond": "noise"}, "on: value"),
    ],
)
def test_bad_relative_rules_are_refused_with_the_reason(rule: dict[str, Any], expected: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(expected)):
        Policy.from_dict({"rules": [rule]})


def test_rules_that_cannot_be_evaluated_are_errors_before_work() -> None:
    policy = Policy.from_dict(
        {
            "rules": [
                {"metric": "recall", "baseline": "holdout", "beyond": "noise"},
                {"metric": "fid", "baseline": "parent", "max_increase": "5%"},
            ]
        }
    )
    with pytest.raises(PolicyError, match="compare with the holdout, but the audit has none"):
        policy.check_applicable(("recall", "fid"), True, has_holdout=False, has_parent=True)
    with pytest.raises(PolicyError, match="compare with the parent audit, but the audit has none"):
        policy.check_applicable(("recall", "fid"), True, has_holdout=True, has_parent=False)
    with pytest.raises(PolicyError, match="bootstrap is off"):
        policy.check_applicable(("recall", "fid"), False, has_holdout=True, has_parent=True)
    with pytest.raises(PolicyError, match="was not resolved from the audit history"):
        evaluate_policy(policy, {"recall": entry(0.9, baseline=0.9), "fid": entry(1.0)}, {})


# --- the collapse early warning on the demo's chain ------------------------------------------------------


@pytest.fixture(scope="module")
def demo_documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    data = build_demo_data(tmp_path_factory.mktemp("demo"), generations=1)
    real = torch.from_numpy(np.load(data.real))
    holdout = np.load(data.holdout)
    params = MetricParams(metrics=COLLAPSE, bootstrap=200, spectral_bootstrap=20)

    def metrics(synthetic: np.ndarray) -> dict[str, Any]:
        evaluation = evaluate(real, torch.from_numpy(synthetic), params=params)
        counts = {"real": {"n": len(real)}, "synthetic": {"n": len(synthetic)}, "details": evaluation.details}
        values = {name: value.to_dict() for name, value in evaluation.metrics.items()}
        return {"metrics": values, "sizes": sample_sizes(counts)}

    half = len(holdout) // 2
    return {
        "gen0": metrics(np.load(data.generations[0])),
        "gen1": metrics(np.load(data.generations[1])),
        "fresh_a": metrics(holdout[:half]),
        "fresh_b": metrics(holdout[half : 2 * half]),
    }


def test_generation_1_is_flagged_beyond_noise_while_fresh_real_data_is_not(
    demo_documents: dict[str, dict[str, Any]],
) -> None:
    policy = Policy.from_dict(
        {"rules": [{"metric": name, "baseline": "parent", "beyond": "noise"} for name in COLLAPSE]}
    )

    def judge(child: str, parent: str) -> dict[str, Any]:
        base = {**snapshot(demo_documents[parent]["metrics"]), "sizes": demo_documents[parent]["sizes"]}
        sizes = {"audit": demo_documents[child]["sizes"]}
        return evaluate_policy(policy, demo_documents[child]["metrics"], {"parent": base}, sizes=sizes)

    chain = judge("gen1", "gen0")
    flagged = [rule["metric"] for rule in chain["rules"] if rule["outcome"] == "fail"]
    assert flagged, chain["rules"]  # generation 1 already drifts on a collapse metric
    assert set(flagged) & {"mode_coverage", "mode_jsd", "tail_recall", "effective_rank_ratio"}, flagged
    fresh = judge("fresh_b", "fresh_a")
    assert fresh["passed"] is True, [rule["message"] for rule in fresh["rules"] if rule["outcome"] != "pass"]
    text = render(
        GateOutcome(audit_id="g" * 32, state="succeeded", passed=False, rules=chain["rules"]), "text"
    )
    assert "vs parent: " in text and "beyond noise" in text


# --- from the history: the CLI with a real database ------------------------------------------------------


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AUDITOR_DATABASE_URL", database_url)
    monkeypatch.setenv("AUDITOR_HOME", str(tmp_path / "home"))
    return CliRunner()


def test_parent_last_passed_and_named_audits_are_read_from_the_history(
    cli: CliRunner, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    paths = {}
    for name, shift in (("real", 0.0), ("good", 0.0), ("drifted", 0.6)):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], (rng.normal(size=(300, 6)) + shift).astype(np.float32))

    def audit(
        synthetic: str, policy: dict[str, Any] | None, *extra: str
    ) -> tuple[int, dict[str, Any] | None, str]:
        args = ["audit", "--real", str(paths["real"]), "--synthetic", str(paths[synthetic])]
        args += [
            "--metrics",
            "fid,recall",
            "--bootstrap",
            "50",
            "--spectral-bootstrap",
            "5",
            "--project",
            "chain",
        ]
        out = tmp_path / f"{synthetic}-{len(list(tmp_path.glob('*.json')))}.json"
        if policy is not None:
            policy_path = tmp_path / f"policy-{abs(hash(json.dumps(policy)))}.yaml"
            policy_path.write_text(json.dumps(policy))
            args += ["--policy", str(policy_path)]
        result = cli.invoke(app, [*args, "--json", str(out), *extra])
        # The message as one line (the console wraps it).
        return (
            result.exit_code,
            json.loads(out.read_text()) if out.exists() else None,
            " ".join(result.stderr.split()),
        )

    code, first, _ = audit("good", {"rules": [{"metric": "fid", "max": 10.0}]})
    assert code == 0 and first is not None
    relative = {"rules": [{"metric": "fid", "baseline": "parent", "max_increase": "50%"}]}
    code, second, _ = audit("drifted", relative, "--parent", first["audit_id"])
    assert code == 1 and second is not None  # fid grew far beyond 50% of the parent's
    (rule,) = second["verdict"]["rules"]
    assert rule["baseline"]["audit_id"] == first["audit_id"] and rule["outcome"] == "fail"
    assert second["verdict"]["baselines"]["parent"]["audit_id"] == first["audit_id"]

    last_passed = {"rules": [{"metric": "recall", "baseline": "last_passed", "max_decrease": 0.9}]}
    code, third, _ = audit("good", last_passed)
    assert code == 0 and third is not None
    assert third["verdict"]["rules"][0]["baseline"]["audit_id"] == first["audit_id"]  # the one that passed

    named = {"rules": [{"metric": "fid", "baseline": f"audit:{second['audit_id'][:10]}", "max_increase": 0}]}
    code, fourth, _ = audit("good", named)
    assert code == 0 and fourth is not None  # far better than the drifted audit it names

    # Bad baselines are errors before any work: exit 2, nothing recorded.
    code, none, err = audit("good", relative)
    assert code == 2 and none is None and "the audit has none (--parent)" in err
    code, none, err = audit(
        "good", {"rules": [{"metric": "fid", "baseline": "audit:abcdef1234", "beyond": "noise"}]}
    )
    assert code == 2 and none is None and "baseline audit:abcdef1234" in err


def test_a_share_near_zero_has_a_noise_floor_not_a_zero_width_interval() -> None:
    """The percentile bootstrap of a share of 0 is [0, 0]: without the floor, 0 -> 1/600 is 'beyond noise'."""
    policy = Policy.from_dict(
        {"rules": [{"metric": "duplicate_rate", "baseline": "parent", "beyond": "noise"}]}
    )
    bare = snapshot({"duplicate_rate": entry(0.0, half=0.0)})
    parent = {**bare, "sizes": {"synthetic": 600}}
    one_more = {"duplicate_rate": entry(1 / 600, half=0.0)}
    assert not evaluate_policy(policy, one_more, {"parent": bare})["passed"]  # no sizes: no floor
    floored = evaluate_policy(policy, one_more, {"parent": parent}, sizes={"audit": {"synthetic": 600}})
    assert floored["passed"], floored["rules"][0]["message"]
    many_more = {"duplicate_rate": entry(0.05, half=0.0)}
    assert not evaluate_policy(policy, many_more, {"parent": parent}, sizes={"audit": {"synthetic": 600}})[
        "passed"
    ]
