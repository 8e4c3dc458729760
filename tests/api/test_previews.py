"""Previews over the API: made by the worker that scores, stored with the audit, served only inside its
authenticated report, and withheld when the audit or the operator switched them off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer

from auditor.client import ApiError
from auditor.pipeline import previews as pv

AUDITOR = str(Path(sys.executable).parent / "auditor")
METRICS = ["precision", "coverage", "memorization_rate", "mode_coverage"]


def write_tables(directory: Path) -> tuple[dict[str, str], str]:
    """Breast-cancer rows as real and synthetic tables (the synthetic one copies a real row); returns
    the paths and a cell value of the copied real row, as its preview shows it."""
    frame = load_breast_cancer(as_frame=True).frame
    real, synthetic = frame.iloc[:200], frame.iloc[200:400].copy()
    synthetic.iloc[0] = real.iloc[19]
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"real": str(directory / "real.csv"), "synthetic": str(directory / "synthetic.csv")}
    real.to_csv(paths["real"], index=False)
    synthetic.to_csv(paths["synthetic"], index=False)
    return paths, f"<dd>{real.iloc[19]['mean radius']:.6g}</dd>"


def body(paths: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "real": {"uri": paths["real"]},
        "synthetic": {"uri": paths["synthetic"]},
        "extractor": "tabular",
        "params": {"metrics": METRICS, "bootstrap": 0, "spectral_bootstrap": 0},
        "project": "tables",
        **extra,
    }


def test_previews_follow_the_audit_and_the_operator(service, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    paths, copied_cell = write_tables(service.home / "tables")
    with service.client() as client:
        shown = client.wait(client.submit(body(paths))["id"], timeout=120, poll_s=0.2)
        hidden = client.wait(client.submit(body(paths, previews=False))["id"], timeout=120, poll_s=0.2)
        assert shown["state"] == hidden["state"] == "succeeded", (shown, hidden)
        assert shown["result"]["diagnostics"]["previews"]["count"] > 0
        assert hidden["result"]["diagnostics"]["previews"]["omitted"] == pv.SPEC_OFF
        report = client.report(shown["id"])
        assert 'class="preview-row"' in report and copied_cell in report
        assert 'id="gallery-copies"' in report and 'id="columns"' in report
        without = client.report(hidden["id"])
        assert 'class="preview-row"' not in without and copied_cell not in without
        # The operator switches previews off: the ones already stored are no longer served.
        monkeypatch.setattr(service.context.settings, "previews", False)
        withheld = client.report(shown["id"])
        assert 'class="preview-row"' not in withheld and copied_cell not in withheld
        assert pv.OPERATOR_OFF in withheld and 'id="gallery-copies"' in withheld
    # Served only inside the audit's report, under its access rules: another project's key gets nothing.
    monkeypatch.setattr(service.context.settings, "previews", True)
    with service.client(service.project_key("elsewhere")) as outsider, pytest.raises(ApiError) as refused:
        outsider.report(shown["id"])
    assert refused.value.http_status in (403, 404)
    with service.client() as client:
        assert copied_cell in client.report(shown["id"])


def test_submit_no_previews_from_the_console_script(service) -> None:  # type: ignore[no-untyped-def]
    paths, _ = write_tables(service.home / "cli-tables")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env.update(
        AUDITOR_API_URL=service.url, AUDITOR_API_KEY=service.admin_key, AUDITOR_HOME=str(service.home / "cli")
    )
    args = ["submit", "--real", paths["real"], "--synthetic", paths["synthetic"], "--extractor", "tabular",
            "--metrics", ",".join(METRICS), "--bootstrap", "0", "--no-previews", "--wait"]  # fmt: skip
    done = subprocess.run([AUDITOR, *args], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    with service.client() as client:
        audit = client.get(done.stdout.strip().splitlines()[0])
    assert audit["result"]["diagnostics"]["previews"]["omitted"] == pv.SPEC_OFF
