"""`auditor submit / wait / gate` as a pipeline runs them: the console script, real exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

AUDITOR = str(Path(sys.executable).parent / "auditor")


def run(service, *args: str, api_url: str | None = None) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return run_with_env(service, {"AUDITOR_API_URL": api_url or service.url}, *args)


def run_with_env(service, extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITOR_", "GITHUB_"))}
    env.update(
        AUDITOR_API_URL=service.url, AUDITOR_API_KEY=service.admin_key, AUDITOR_HOME=str(service.home / "cli")
    )
    env.update(extra)
    return subprocess.run([AUDITOR, *args], env=env, capture_output=True, text=True, timeout=180)


def policy_file(tmp_path: Path, fid_max: float) -> str:
    path = tmp_path / f"gate-{fid_max}.yaml"
    path.write_text(yaml.safe_dump({"rules": [{"metric": "fid", "max": fid_max}]}))
    return str(path)


def submit_args(service, *extra: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        "submit", "--real", service.data["real"], "--synthetic", service.data["synthetic"],
        "--metrics", "fid,precision", "--bootstrap", "10", *extra,
    ]  # fmt: skip


def test_submit_wait_and_gate_exit_codes(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    passing = run(service, *submit_args(service, "--policy", policy_file(tmp_path, 100.0), "--wait"))
    assert passing.returncode == 0, passing.stderr
    audit_id = passing.stdout.strip().splitlines()[0]
    assert len(audit_id) == 32

    failing = run(service, *submit_args(service, "--policy", policy_file(tmp_path, 1e-9)))
    assert failing.returncode == 0, failing.stderr  # without --wait: submitted is success
    failing_id = failing.stdout.strip()
    gate = run(service, "gate", failing_id, "--timeout", "120")
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert f"{failing_id} succeeded gate=fail" in gate.stdout

    assert run(service, "gate", audit_id).returncode == 0

    # The CI formats, from the console script against the live server.
    junit_path = tmp_path / "gate.xml"
    junit = run(service, "gate", failing_id, "--format", "junit", "--output", str(junit_path))
    assert junit.returncode == 1, junit.stderr
    assert (
        junit.stdout == ""
        and "<failure" in junit_path.read_text()
        and "fid &lt;= 1e-09" in junit_path.read_text()
    )
    summary = tmp_path / "summary.md"
    github = run_with_env(
        service, {"GITHUB_STEP_SUMMARY": str(summary)}, "gate", failing_id, "--format", "github"
    )
    assert github.returncode == 1
    assert github.stdout.startswith("::error title=auditor gate%3A fid <= 1e-09::fid.value = ")
    assert summary.read_text().startswith("### auditor gate: FAILED")
    markdown = run(service, "gate", audit_id, "--format", "markdown")
    assert markdown.returncode == 0 and "| PASS | fail | `fid <= 100` |" in markdown.stdout
    wrong = run(service, "gate", audit_id, "--format", "xml")
    assert wrong.returncode == 2 and "unknown --format 'xml'" in wrong.stderr
    waited = run(service, "wait", audit_id, "--json", "-")
    assert waited.returncode == 0
    assert '"fid"' in waited.stdout


def test_gate_on_a_failed_audit_exits_2(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    narrow = tmp_path / "data" / "narrow.npy"
    np.save(narrow, np.zeros((300, 4), dtype=np.float32))
    submitted = run(service, "submit", "--real", service.data["real"], "--synthetic", str(narrow))
    assert submitted.returncode == 0, submitted.stderr
    gate = run(service, "gate", submitted.stdout.strip(), "--timeout", "120")
    assert gate.returncode == 2, gate.stdout + gate.stderr
    assert "dimension_mismatch" in gate.stdout  # the gate report names the audit's error


def test_bad_input_and_unreachable_server(service) -> None:  # type: ignore[no-untyped-def]
    missing = run(service, "submit", "--real", service.data["real"], "--synthetic", "data/absent.npy")
    assert missing.returncode == 2
    assert "[dataset_not_found]" in missing.stderr and "Traceback" not in missing.stderr
    unknown = run(service, "wait", "f" * 32)
    assert unknown.returncode == 2 and "[not_found]" in unknown.stderr
    down = run(service, "gate", "f" * 32, api_url="http://127.0.0.1:9")
    assert down.returncode == 3 and "cannot reach the auditor API" in down.stderr
