"""``auditor samples`` on the local database (SQLite and PostgreSQL): table, JSON pages, parquet, exit
codes. The ``--server`` mode is tested in tests/cli/test_lazy_imports.py, with the heavy modules blocked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from auditor.cli.main import app

N_REAL, N_SYNTHETIC, N_COPIES = 150, 120, 12


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AUDITOR_DATABASE_URL", database_url)
    monkeypatch.setenv("AUDITOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def audit(cli: CliRunner, tmp_path: Path, metrics: str) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    real = rng.normal(size=(N_REAL, 5)).astype(np.float32)
    synthetic = rng.normal(size=(N_SYNTHETIC, 5)).astype(np.float32)
    synthetic[-N_COPIES:] = real[:N_COPIES]  # the last rows are copies
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "synthetic.npy", synthetic)
    result = cli.invoke(
        app,
        [
            "audit", "--real", str(tmp_path / "real.npy"), "--synthetic", str(tmp_path / "synthetic.npy"),
            "--metrics", metrics, "--bootstrap", "0", "--spectral-bootstrap", "0", "--json", "-",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_samples_prints_the_flagged_rows_and_pages_through_them(cli: CliRunner, tmp_path: Path) -> None:
    document = audit(cli, tmp_path, "precision,memorization_rate,coverage")
    audit_id = document["audit_id"]
    rate = document["metrics"]["memorization_rate"]["value"]

    shown = cli.invoke(app, ["samples", audit_id[:8], "--flag", "memorized", "--limit", "5"])
    assert shown.exit_code == 0, shown.output
    assert "memorized" in shown.stdout and "nearest real" in shown.stdout
    assert (
        f"5 of {round(rate * N_SYNTHETIC)} shown" in shown.stdout and "next page: --cursor " in shown.stdout
    )

    indices: list[int] = []
    cursor: list[str] = []
    while True:
        page = cli.invoke(
            app, ["samples", audit_id, "--flag", "memorized", "--limit", "4", "--json", "-", *cursor]
        )
        assert page.exit_code == 0, page.output
        body = json.loads(page.stdout)
        indices += [row["index"] for row in body["items"]]
        if body["next_cursor"] is None:
            break
        cursor = ["--cursor", body["next_cursor"]]
    assert indices == sorted(set(indices)) and len(indices) == round(rate * N_SYNTHETIC)
    assert set(range(N_SYNTHETIC - N_COPIES, N_SYNTHETIC)) <= set(indices)

    out = tmp_path / "out" / "closest.parquet"
    written = cli.invoke(
        app, ["samples", audit_id, "--order=-nearest_real_distance", "--parquet", str(out), "--limit", "3"]
    )
    assert written.exit_code == 0, written.output
    table = pq.read_table(out)
    assert table.num_rows == N_SYNTHETIC  # the whole table, not the page
    distances = table.column("nearest_real_distance").to_pylist()
    assert distances == sorted(distances, reverse=True)

    real = cli.invoke(app, ["samples", audit_id, "--side", "real", "--flag", "uncovered", "--json", "-"])
    assert real.exit_code == 0, real.output
    uncovered = json.loads(real.stdout)
    assert uncovered["total"] == round((1 - document["metrics"]["coverage"]["value"]) * N_REAL)
    assert all(row["covered"] is False for row in uncovered["items"])


def test_samples_exit_codes(cli: CliRunner, tmp_path: Path) -> None:
    document = audit(cli, tmp_path, "fid")

    def run(*args: str) -> tuple[int, str]:
        result = cli.invoke(app, ["samples", *args])
        return result.exit_code, result.stderr

    assert run("f" * 32) == (2, f"error [not_found]: no audit matches '{'f' * 32}'\n")
    code, message = run(document["audit_id"])
    assert code == 2 and "error [no_diagnostics]" in message and "no k-NN or mode metric" in message
    code, message = run(document["audit_id"], "--flag", "uncovered")
    assert code == 2 and "error [invalid_filter]: flag 'uncovered' is about real samples" in message
    code, message = run(document["audit_id"], "--cursor", "garbage")
    assert code == 2 and "error [invalid_cursor]" in message
