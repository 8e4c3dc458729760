"""`auditor policy suggest`: a starting policy that fresh real data passes and a collapsed set fails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.errors import BadInputError
from auditor.gates.suggest import suggest_policy_yaml, suggest_rules
from auditor.policy import Policy, evaluate_policy

METRICS = "fid,precision,recall,coverage,density,memorization_rate,mode_coverage,mode_jsd,kid"


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AUDITOR_DATABASE_URL", database_url)
    monkeypatch.setenv("AUDITOR_HOME", str(tmp_path / "home"))
    return CliRunner()


def write(tmp_path: Path, name: str, array: np.ndarray) -> str:
    path = tmp_path / f"{name}.npy"
    np.save(path, array.astype(np.float32))
    return str(path)


def audit_json(cli: CliRunner, tmp_path: Path, real: str, synthetic: str, holdout: str | None) -> dict:
    out = tmp_path / f"result-{Path(synthetic).stem}.json"
    args = ["audit", "--real", real, "--synthetic", synthetic, "--metrics", METRICS, "--bootstrap", "50"]
    args += ["--spectral-bootstrap", "5", "--json", str(out), *(["--holdout", holdout] if holdout else [])]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.stdout + result.stderr
    return json.loads(out.read_text())


def test_the_suggested_policy_passes_real_data_and_fails_a_collapsed_set(
    cli: CliRunner, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    real = write(tmp_path, "real", rng.normal(size=(400, 8)))
    fresh = write(tmp_path, "fresh", rng.normal(size=(400, 8)))
    holdout = write(tmp_path, "holdout", rng.normal(size=(400, 8)))
    collapsed = write(tmp_path, "collapsed", 0.4 * rng.normal(size=(400, 8)))
    reference = audit_json(cli, tmp_path, real, fresh, holdout)

    suggested = cli.invoke(app, ["policy", "suggest", "--from", reference["audit_id"][:12]])
    assert suggested.exit_code == 0, suggested.stdout + suggested.stderr
    path = tmp_path / "suggested.yaml"
    path.write_text(suggested.stdout)
    policy = Policy.from_yaml(path)
    assert {rule.metric for rule in policy.rules} == set(METRICS.split(","))
    assert "# holdout " in suggested.stdout  # every rule says where its number came from

    # Fresh real data and the holdout itself pass; the noise floor never trips.
    verdict = evaluate_policy(policy, reference["metrics"])
    assert verdict["passed"] and verdict["noise_floor"] == [], verdict
    # A collapsed set (the same mean, 0.4x the spread) fails on the diversity metrics.
    bad = audit_json(cli, tmp_path, real, collapsed, holdout)
    failed = {
        rule["metric"]
        for rule in evaluate_policy(policy, bad["metrics"])["rules"]
        if rule["outcome"] == "fail"
    }
    assert {"recall", "coverage"} <= failed, failed

    written = tmp_path / "out" / "policy.yaml"
    to_file = cli.invoke(app, ["policy", "suggest", "--from", reference["audit_id"], "-o", str(written)])
    assert to_file.exit_code == 0 and Policy.from_yaml(written) == policy


def test_an_audit_without_a_holdout_is_refused_with_the_reason(cli: CliRunner, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    document = audit_json(
        cli,
        tmp_path,
        write(tmp_path, "r", rng.normal(size=(100, 4))),
        write(tmp_path, "s", rng.normal(size=(100, 4))),
        None,
    )
    result = cli.invoke(app, ["policy", "suggest", "--from", document["audit_id"]])
    assert result.exit_code == 2 and "has no holdout" in result.stderr
    with pytest.raises(BadInputError, match="no holdout"):
        suggest_rules(document)


def test_metrics_without_an_interval_are_left_out_with_a_comment() -> None:
    document = {
        "audit_id": "c" * 32,
        "holdout": {"n": 100},
        "protocol": {"fingerprint": "f" * 16},
        "metrics": {
            "fid": {"value": 1.5, "ci_low": 1.0, "ci_high": 2.0, "baseline": 0.5},
            "recall": {"value": 0.9, "ci_low": None, "ci_high": None, "baseline": 0.95},
            "coverage": {"value": 0.98, "ci_low": 0.9, "ci_high": 1.0, "baseline": 0.97},
        },
    }
    text = suggest_policy_yaml(document)
    assert "# left out: recall: no interval (bootstrap was off)" in text
    policy = Policy.from_dict(__import__("yaml").safe_load(text))
    rules = {rule.metric: rule for rule in policy.rules}
    assert rules["fid"].max == 1.5  # 0.5 + width 1.0, lower is better
    assert rules["coverage"].min == pytest.approx(0.87)  # 0.97 - width 0.1, higher is better
