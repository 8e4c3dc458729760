"""``auditor audit --report`` and ``auditor show --report`` carry the galleries' previews; ``--no-previews``
and ``AUDITOR_PREVIEWS=off`` leave them out (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.pipeline import previews as pv

SENTENCES = [
    f"{who} {did} {when}"
    for who in ("The farmer", "A teacher", "The pilot", "My neighbour", "The chef")
    for did in ("planted tomatoes", "read a novel", "fixed the roof", "painted the fence")
    for when in ("in the morning.", "near the river.", "after lunch.")
]
COPIED = SENTENCES[4]


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AUDITOR_DATABASE_URL", database_url)
    monkeypatch.setenv("AUDITOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AUDITOR_PREVIEWS", raising=False)
    return CliRunner()


@pytest.fixture
def corpora(tmp_path: Path) -> list[str]:
    (tmp_path / "real.txt").write_text("\n".join(SENTENCES[::2]) + "\n", encoding="utf-8")
    synthetic = [s.replace("The", "A") for s in SENTENCES[1::2]] + [COPIED]
    (tmp_path / "synthetic.txt").write_text("\n".join(synthetic) + "\n", encoding="utf-8")
    return [
        "--real", str(tmp_path / "real.txt"), "--synthetic", str(tmp_path / "synthetic.txt"),
        "--metrics", "precision,coverage,memorization_rate", "--bootstrap", "0", "--nearest-k", "3",
        "--device", "cpu", "--json", "-",
    ]  # fmt: skip


def audit(cli: CliRunner, *args: str) -> dict:  # type: ignore[type-arg]
    result = cli.invoke(app, ["audit", *args])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_reports_quote_the_copied_line_unless_previews_are_off(
    cli: CliRunner, corpora: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = audit(cli, *corpora, "--report", str(tmp_path / "on.html"))
    assert document["diagnostics"]["previews"]["count"] > 0
    quoted = f'<blockquote class="preview-text">{COPIED}</blockquote>'
    assert quoted in (tmp_path / "on.html").read_text()
    shown = cli.invoke(app, ["show", document["audit_id"], "--report", str(tmp_path / "again.html")])
    assert shown.exit_code == 0 and quoted in (tmp_path / "again.html").read_text()

    off = audit(cli, *corpora, "--no-previews", "--report", str(tmp_path / "off.html"))
    assert off["diagnostics"]["previews"]["omitted"] == pv.SPEC_OFF
    assert COPIED not in (tmp_path / "off.html").read_text()

    # The operator's switch: no previews made, and none served of those already stored.
    monkeypatch.setenv("AUDITOR_PREVIEWS", "off")
    assert audit(cli, *corpora)["diagnostics"]["previews"]["omitted"] == pv.OPERATOR_OFF
    withheld = cli.invoke(app, ["show", document["audit_id"], "--report", str(tmp_path / "withheld.html")])
    assert withheld.exit_code == 0
    page = (tmp_path / "withheld.html").read_text()
    assert COPIED not in page and pv.OPERATOR_OFF in page
