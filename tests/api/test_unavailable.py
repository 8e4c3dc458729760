"""The database is down: the API answers 503 ``service_unavailable`` with ``Retry-After`` (the client
may retry; it was a 500 ``internal_error`` before), and ``auditor serve`` says so and exits 3."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers.services import ApiServer, free_port, write_embeddings

from auditor.config import Settings
from auditor.service.context import ServiceContext
from auditor.service.dispatch import InProcessDispatcher

AUDITOR = str(Path(sys.executable).parent / "auditor")
# Nothing listens on port 1 of the loopback: every connection is refused at once.
CLOSED_PORT_URL = "postgresql+psycopg://postgres@127.0.0.1:1/auditor"


@pytest.fixture(params=[True, False], ids=["auth", "no-auth"])
def unreachable(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    """The API on a database nobody answers at; with auth (every request looks its key up first) and
    without (the submit itself reaches the database)."""
    from auditor.api import create_app

    settings = Settings(
        database_url=CLOSED_PORT_URL,
        home=tmp_path / "home",
        data_roots=str(tmp_path),
        auth_required=request.param,
    )
    context = ServiceContext.from_settings(settings, migrate=False)
    dispatcher = InProcessDispatcher(context)
    context.dispatcher = dispatcher
    data = write_embeddings(tmp_path / "data")
    headers = {"Authorization": "Bearer sda_00000000_whatever"} if request.param else {}
    try:
        with ApiServer(create_app(context)) as server:
            yield server.url, headers, data
    finally:
        dispatcher.close()
        context.engine.dispose()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "service_unavailable", response.text
    assert int(response.headers["retry-after"]) > 0


def test_submit_and_list_answer_503_with_retry_after(unreachable) -> None:  # type: ignore[no-untyped-def]
    url, headers, data = unreachable
    body = {
        "real": {"uri": data["real"]},
        "synthetic": {"uri": data["synthetic"]},
        "params": {"metrics": ["fid"]},
    }
    assert_unavailable(httpx.post(f"{url}/v1/audits", json=body, headers=headers, timeout=30))
    assert_unavailable(httpx.get(f"{url}/v1/audits", headers=headers, timeout=30))
    assert_unavailable(httpx.get(f"{url}/v1/audits/{'a' * 32}", headers=headers, timeout=30))
    assert_unavailable(httpx.get(f"{url}/v1/projects", headers=headers, timeout=30))
    ready = httpx.get(f"{url}/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unavailable")
    assert httpx.get(f"{url}/healthz").status_code == 200  # the process itself is alive


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env.update(AUDITOR_HOME=str(tmp_path / "home"), AUDITOR_DATABASE_URL=CLOSED_PORT_URL, **extra)
    return env


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "PORT"],
        ["db", "upgrade"],
        ["keys", "create", "--admin"],
        ["keys", "revoke", "sda_00000000"],
    ],
)
def test_commands_without_their_database_say_so_and_exit_3(tmp_path: Path, args: list[str]) -> None:
    """`auditor serve` used to print "internal error ... This is a bug" (or start and answer only 500s)."""
    args = [str(free_port()) if arg == "PORT" else arg for arg in args]
    result = subprocess.run([AUDITOR, *args], env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result
    assert "This is a bug" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    message = " ".join(result.stderr.split())  # rich wraps lines
    assert "[service_unavailable]" in message, message
    assert "cannot use the database at postgresql+psycopg://postgres@127.0.0.1:1/auditor" in message
    assert "Connection refused" in message and "AUDITOR_DATABASE_URL" in message
