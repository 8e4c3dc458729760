"""The verbs that do not compute never import the numerical stack.

Pipelines call ``auditor submit / wait / gate`` in loops and people type ``auditor --help``: importing
torch (and NumPy, scikit-learn, ...) costs them seconds for nothing. Every check here runs the real
console script in a subprocess whose ``sitecustomize`` installs a ``sys.meta_path`` finder that refuses
:data:`HEAVY` and logs every attempt, so a verb passes only if it works without those modules *and*
never tried to import them (a guarded ``try: import numpy`` fails the test too). The compute verbs
(``audit``, ``demo``, ``worker``, ``serve``) import what they need inside their command functions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.services import ApiServer, write_embeddings
from typer.testing import CliRunner

from auditor.cli.main import app

AUDITOR = str(Path(sys.executable).parent / "auditor")
HEAVY = ("torch", "torchvision", "numpy", "scipy", "sklearn", "pandas", "pyarrow", "PIL")
UNREACHABLE = "http://127.0.0.1:9"

# Imported by site at start-up (PYTHONPATH puts its directory first); the venv has no sitecustomize.
SITECUSTOMIZE = """
import os
import sys

_BLOCKED = frozenset(os.environ["AUDITOR_TEST_BLOCKED_MODULES"].split(","))
_LOG = os.environ["AUDITOR_TEST_IMPORT_LOG"]


class _BlockHeavyImports:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in _BLOCKED:
            return None
        with open(_LOG, "a") as log:
            log.write(name + "\\n")
        raise ModuleNotFoundError(f"import of {name!r} is blocked by tests/cli/test_lazy_imports.py", name=name)


sys.meta_path.insert(0, _BlockHeavyImports())
"""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    attempted: list[str]  # the blocked modules the process tried to import


@dataclass
class Env:
    """Runs ``auditor`` (or Python) with the heavy modules blocked, against a private SQLite database."""

    directory: Path
    database_url: str

    def run(self, *args: str, api_url: str = UNREACHABLE, api_key: str = "sda_test") -> Result:
        return self.run_program([AUDITOR, *args], api_url=api_url, api_key=api_key)

    def run_program(
        self, argv: list[str], *, api_url: str = UNREACHABLE, api_key: str = "sda_test"
    ) -> Result:
        log = self.directory / "attempted.log"
        log.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(self.directory / "site"), env.get("PYTHONPATH")])),
            AUDITOR_TEST_BLOCKED_MODULES=",".join(HEAVY),
            AUDITOR_TEST_IMPORT_LOG=str(log),
            AUDITOR_DATABASE_URL=self.database_url,
            AUDITOR_HOME=str(self.directory / "home"),
            AUDITOR_API_URL=api_url,
            AUDITOR_API_KEY=api_key,
            COLUMNS="200",
        )
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        attempted = log.read_text().split() if log.exists() else []
        return Result(proc.returncode, proc.stdout, proc.stderr, attempted)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return Env(tmp_path, f"sqlite:///{tmp_path / 'db' / 'auditor.db'}")


def ok(result: Result, code: int = 0) -> Result:
    """``result`` exited ``code`` without trying to import anything heavy."""
    assert result.attempted == [], f"tried to import {result.attempted}:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, (
        f"exit {result.returncode}, expected {code}:\n{result.stdout}\n{result.stderr}"
    )
    return result


def test_the_blocker_blocks(env: Env) -> None:
    """Without this, every other test here could pass vacuously."""
    blocked = env.run_program([sys.executable, "-c", "import numpy"])
    assert blocked.returncode == 1 and "blocked by tests/cli/test_lazy_imports.py" in blocked.stderr
    assert blocked.attempted == ["numpy"]
    # The compute verbs do need the stack: audit fails under the blocker, as an internal error.
    audit = env.run("audit", "--real", "r.npy", "--synthetic", "s.npy", "--no-store")
    assert audit.returncode == 3 and "torch" in audit.attempted


def test_importing_the_cli_and_the_client_loads_no_heavy_module() -> None:
    code = (
        "import json, sys\n"
        "import auditor.cli.main, auditor.cli.service, auditor.cli.common, auditor.client, auditor.policy\n"
        "import auditor.cli.webhooks, auditor.webhooks, auditor.cli.waivers, auditor.cli.policy, auditor.gates.output\n"
        "import auditor.config, auditor.errors, auditor.metrics, auditor.db.queries, auditor.db.migrate\n"
        f"print(json.dumps(sorted({{m.partition('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_importing_auditor_and_its_public_names_loads_no_heavy_module() -> None:
    """A notebook's ``import auditor`` (and reading ``auditor.audit``) costs no torch: the pipeline is
    imported when an audit runs."""
    code = (
        "import json, sys\n"
        "import auditor\n"
        "names = [getattr(auditor, name) for name in auditor.__all__]\n"
        f"print(json.dumps(sorted({{m.partition('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["audit", "--help"],
        ["history", "--help"],
        ["show", "--help"],
        ["demo", "--help"],
        ["serve", "--help"],
        ["worker", "--help"],
        ["submit", "--help"],
        ["wait", "--help"],
        ["gate", "--help"],
        ["samples", "--help"],
        ["db", "--help"],
        ["db", "upgrade", "--help"],
        ["keys", "--help"],
        ["keys", "create", "--help"],
        ["webhooks", "--help"],
        ["webhooks", "add", "--help"],
        ["webhooks", "deliveries", "--help"],
    ],
    ids=" ".join,
)
def test_help(env: Env, args: list[str]) -> None:
    result = ok(env.run(*args))
    assert f"Usage: auditor {' '.join(args[:-1])}".rstrip() in result.stdout


def test_usage_errors_exit_2(env: Env) -> None:
    assert "No such command 'bogus'" in ok(env.run("bogus"), 2).stderr
    assert "Missing argument 'audit_id'" in ok(env.run("gate"), 2).stderr
    assert "Missing option '--real'" in ok(env.run("submit", "--synthetic", "s.npy"), 2).stderr


def test_history_and_show_on_an_empty_database(env: Env) -> None:
    assert "Audit history (sqlite)" in ok(env.run("history")).stdout
    assert json.loads(ok(env.run("history", "--json", "-")).stdout) == {"audits": []}
    unknown = ok(env.run("show", "ffffffffffff"), 2)
    assert "error [not_found]: no audit matches 'ffffffffffff'" in unknown.stderr


def test_history_and_show_of_recorded_audits(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # The audits are computed here, in the test process (torch loaded); only reading them is checked.
    rng = np.random.default_rng(0)
    for name in ("real", "synth"):
        np.save(env.directory / f"{name}.npy", rng.normal(size=(150, 6)).astype(np.float32))
    policy = env.directory / "gate.yaml"
    policy.write_text(yaml.safe_dump({"rules": [{"metric": "fid", "max": 1e-9}]}))
    monkeypatch.setenv("AUDITOR_DATABASE_URL", env.database_url)
    monkeypatch.setenv("AUDITOR_HOME", str(env.directory / "home"))
    ids = []
    for extra, code in (([], 0), (["--policy", str(policy)], 1)):
        audit = CliRunner().invoke(
            app,
            [
                "audit", "--real", str(env.directory / "real.npy"), "--synthetic", str(env.directory / "synth.npy"),
                "--metrics", "fid,precision,recall", "--bootstrap", "5", "--spectral-bootstrap", "0",
                "--project", "lazy", "--json", "-", *extra,
            ],
        )  # fmt: skip
        assert audit.exit_code == code, audit.output
        ids.append(json.loads(audit.stdout)["audit_id"])
    passed, failed = ids

    table = ok(env.run("history", "--project", "lazy")).stdout
    assert passed[:12] in table and failed[:12] in table
    rows = json.loads(ok(env.run("history", "--json", "-")).stdout)["audits"]
    assert [row["audit_id"] for row in rows] == [failed, passed]
    assert rows[0]["passed"] is False and set(rows[0]["metrics"]) == {"fid", "precision", "recall"}

    shown = ok(env.run("show", passed[:8])).stdout
    assert f"audit {passed}" in shown and "precision" in shown and "no policy" in shown
    assert "FAILED" in ok(env.run("show", failed), 1).stdout
    document = json.loads(ok(env.run("show", failed, "--json", "-"), 1).stdout)
    assert document["audit_id"] == failed and document["verdict"]["passed"] is False
    # The HTML report renders from the stored document and plot arrays: no torch either.
    report = env.directory / "report.html"
    ok(env.run("show", passed, "--report", str(report)))
    assert "<html" in report.read_text() and passed in report.read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["gate", "f" * 32],
        ["gate", "f" * 32, "--no-wait"],
        ["wait", "f" * 32, "--timeout", "5"],
        ["submit", "--real", "r.npy", "--synthetic", "s.npy"],
        ["submit", "--real", "r.npy", "--synthetic", "s.npy", "--policy", "POLICY", "--wait"],
        ["samples", "f" * 32, "--server", "--flag", "memorized"],
        ["webhooks", "add", "https://hooks.example/x", "--project", "p"],
        ["webhooks", "list"],
        ["webhooks", "remove", "f" * 32],
        ["webhooks", "deliveries", "f" * 32, "--state", "failed"],
        ["waivers", "add", "fid", "--reason", "r", "--project", "p"],
        ["waivers", "list", "--project", "p"],
        ["waivers", "revoke", "f" * 32],
        ["gate", "f" * 32, "--format", "junit"],
    ],
    ids=" ".join,
)
def test_client_verbs_against_an_unreachable_server_exit_3(env: Env, args: list[str]) -> None:
    policy = env.directory / "gate.yaml"
    policy.write_text(yaml.safe_dump({"rules": [{"metric": "recall", "min": 0.5, "on": "ci_high"}]}))
    result = ok(env.run(*[str(policy) if a == "POLICY" else a for a in args]), 3)
    assert f"error [service_unavailable]: cannot reach the auditor API at {UNREACHABLE}" in result.stderr


def test_submit_refuses_bad_input_before_calling_the_server(env: Env) -> None:
    missing = ok(env.run("submit", "--real", "r", "--synthetic", "s", "--policy", "absent.yaml"), 2)
    assert "error [dataset_not_found]: policy file not found: absent.yaml" in missing.stderr
    bad = env.directory / "bad.yaml"
    bad.write_text(yaml.safe_dump({"rules": [{"metric": "sharpness", "max": 1}]}))
    invalid = ok(env.run("submit", "--real", "r", "--synthetic", "s", "--policy", str(bad)), 2)
    assert (
        "error [invalid_policy]: invalid policy: rules.0: Value error, unknown metric 'sharpness'"
        in invalid.stderr
    )


def test_admin_verbs(env: Env) -> None:
    assert ok(env.run("db", "upgrade")).stdout.startswith("database at ")
    key = ok(env.run("keys", "create", "--project", "lazy", "--name", "ci"))
    assert key.stdout.strip().startswith("sda_") and "project 'lazy' key" in key.stderr
    assert ok(env.run("keys", "create", "--admin")).stdout.strip().startswith("sda_")
    assert "give exactly one of --admin or --project NAME" in ok(env.run("keys", "create"), 2).stderr


# --- against a live API ---------------------------------------------------------------------------------


@dataclass
class LiveApi:
    url: str
    admin_key: str
    data: dict[str, str]


@pytest.fixture
def live_api(tmp_path: Path) -> Iterator[LiveApi]:
    """The API in embedded mode (in-process worker, SQLite) on a real uvicorn server, in this process."""
    from auditor.api import create_app
    from auditor.config import Settings
    from auditor.db import access
    from auditor.service.context import ServiceContext
    from auditor.service.dispatch import InProcessDispatcher

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", home=tmp_path / "api-home")
    context = ServiceContext.from_settings(settings)
    dispatcher = InProcessDispatcher(context)
    context.dispatcher = dispatcher
    with context.session() as session:
        admin = access.create_api_key(session, name="admin", is_admin=True).secret
    data = write_embeddings(tmp_path / "data", n=150, d=8)
    try:
        with ApiServer(create_app(context)) as server:
            yield LiveApi(url=server.url, admin_key=admin, data=data)
    finally:
        dispatcher.close()
        context.engine.dispose()


def test_submit_wait_and_gate_against_a_live_api(env: Env, live_api: LiveApi) -> None:
    def run(*args: str) -> Result:
        return env.run(*args, api_url=live_api.url, api_key=live_api.admin_key)

    policy = env.directory / "gate.yaml"
    policy.write_text(yaml.safe_dump({"rules": [{"metric": "fid", "max": 1e-9}]}))
    sides = ["--real", live_api.data["real"], "--synthetic", live_api.data["synthetic"]]
    quick = ["--metrics", "fid,precision", "--bootstrap", "5"]

    passing = ok(run("submit", *sides, *quick, "--wait", "--timeout", "120"))
    audit_id = passing.stdout.split()[0]
    assert len(audit_id) == 32 and "no policy" in passing.stdout
    assert f"{audit_id} succeeded gate=pass" in ok(run("gate", audit_id)).stdout
    assert json.loads(ok(run("wait", audit_id, "--json", "-")).stdout)["audit_id"] == audit_id

    failing_id = ok(run("submit", *sides, *quick, "--policy", str(policy))).stdout.strip()
    assert f"{failing_id} succeeded gate=fail" in ok(run("gate", failing_id, "--timeout", "120"), 1).stdout

    unknown = ok(run("wait", "f" * 32), 2)
    assert "error [not_found]" in unknown.stderr

    # Per-sample evidence through the API: JSON pages and a parquet download, without pyarrow here.
    shown = ok(run("samples", audit_id, "--server", "--side", "real", "--limit", "3"))
    assert "in synth. manifold" in shown.stdout and "3 of 150 shown" in shown.stdout
    page = json.loads(
        ok(run("samples", audit_id, "--server", "--order=-nearest_real_distance", "--json", "-")).stdout
    )
    distances = [row["nearest_real_distance"] for row in page["items"]]
    assert page["total"] == 150 and distances == sorted(distances, reverse=True)
    parquet = env.directory / "samples.parquet"
    ok(run("samples", audit_id[:10], "--server", "--flag", "off_support", "--parquet", str(parquet)))
    assert parquet.read_bytes()[:4] == b"PAR1"
    bad = ok(run("samples", audit_id, "--server", "--side", "real", "--flag", "memorized"), 2)
    assert "error [invalid_filter]" in bad.stderr
