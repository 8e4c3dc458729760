"""examples/: the shell each CI example runs, run by bash against a live server with the real CLI.

The GitHub Actions step, the GitLab job's script and the Airflow task's command are read out of the
example files themselves (YAML, and the DAG's source through ``ast``: Airflow is not installed here),
so the examples cannot drift from what is tested. Each runs twice: against a policy the audit passes
(exit 0) and one it fails (exit 1), and leaves the report its CI system reads.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from auditor.policy import Policy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BIN = str(Path(sys.executable).parent)


def github_script() -> tuple[str, dict[str, str]]:
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    job = workflow["jobs"]["gate"]
    (step,) = [step for step in job["steps"] if step.get("name") == "Submit, wait, gate"]
    return step["run"], job["env"]


def gitlab_script() -> tuple[str, dict[str, str]]:
    job = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())["synthetic-data-gate"]
    return "set -e\n" + "\n".join(job["script"]), job["variables"]


def airflow_script() -> tuple[str, dict[str, str]]:
    tree = ast.parse((EXAMPLES / "airflow_dag.py").read_text())
    (command,) = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "GATE_COMMAND"
    ]
    env_dicts = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and node.arg == "env" and isinstance(node.value, ast.Dict)
    ]
    (env,) = [
        {ast.literal_eval(k): ast.literal_eval(v) for k, v in zip(d.keys, d.values, strict=True)}
        for d in env_dicts
    ]
    return command, env


SCRIPTS = {"github": github_script, "gitlab": gitlab_script, "airflow": airflow_script}


def test_the_example_policy_is_valid() -> None:
    assert Policy.from_yaml(EXAMPLES / "policies" / "release-gate.yaml").name == "release-gate"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_variable_the_script_reads_is_set_by_its_file(name: str) -> None:
    script, env = SCRIPTS[name]()
    provided = {*env, "AUDITOR_API_URL", "AUDITOR_API_KEY", "GITHUB_SHA", "CI_COMMIT_SHA", "ID", "status"}
    read = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", script))
    assert read <= provided, read - provided


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_example_submits_waits_and_gates(service, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    script, file_env = SCRIPTS[name]()
    rng = np.random.default_rng(3)
    holdout = tmp_path / "data" / "holdout.npy"
    np.save(holdout, rng.normal(size=(300, 16)).astype(np.float32))
    policies = {
        "pass": {"name": "lenient", "rules": [{"metric": "fid", "max": 100.0}]},
        "fail": {
            "name": "strict",
            "rules": [{"metric": "fid", "max": 1e-9}, {"metric": "recall", "min": 0.0}],
        },
    }
    for expected, (verdict, policy) in enumerate(policies.items()):
        workdir = tmp_path / f"{name}-{verdict}"
        workdir.mkdir()
        policy_path = workdir / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITOR_", "GITHUB_", "CI_"))}
        env.update({key: str(value) for key, value in file_env.items()})  # the file's own settings first
        env.update(
            PATH=f"{BIN}:{env['PATH']}",
            AUDITOR_API_URL=service.url,
            AUDITOR_API_KEY=service.admin_key,
            AUDITOR_HOME=str(workdir / "home"),
            REAL=service.data["real"],
            SYNTHETIC=service.data["synthetic"],
            HOLDOUT=str(holdout),
            POLICY=str(policy_path),
            PROJECT="examples",
            GITHUB_SHA=f"{name}{verdict}",
            CI_COMMIT_SHA=f"{name}{verdict}",
            RUN_TAG=f"{name}{verdict}",
            GITHUB_STEP_SUMMARY=str(workdir / "summary.md"),
        )
        done = subprocess.run(
            ["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == expected, f"{name} {verdict}: {done.stdout}\n{done.stderr}"
        assert re.search(r"^audit [0-9a-f]{32}$", done.stdout, re.MULTILINE), done.stdout
        if name == "github":
            summary = (workdir / "summary.md").read_text()
            assert summary.startswith(f"### auditor gate: {'PASSED' if verdict == 'pass' else 'FAILED'}")
            assert ("::error title=auditor gate%3A fid <= 1e-09" in done.stdout) == (verdict == "fail")
        elif name == "gitlab":
            report = (workdir / "auditor-gate.xml").read_text()
            assert ("<failure" in report) == (verdict == "fail") and 'name="fid &lt;= ' in report
        else:
            assert done.stdout.rstrip().endswith(f"gate={verdict}")
