"""The CLI end to end: real files, real databases (SQLite and PostgreSQL), real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from auditor.cli.main import app

FAST = ["--bootstrap", "20", "--spectral-bootstrap", "3", "--metrics", "fid,precision,recall,coverage,kid"]


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    paths = {
        "real": rng.normal(size=(200, 6)),
        "synth": rng.normal(size=(200, 6)),
        "far": rng.normal(loc=3.0, size=(200, 6)),
        "holdout": rng.normal(size=(200, 6)),
        "wide": rng.normal(size=(200, 7)),
        "tiny": rng.normal(size=(4, 6)),
    }
    out = {}
    for name, array in paths.items():
        out[name] = tmp_path / f"{name}.npy"
        np.save(out[name], array.astype(np.float32))
    nan = rng.normal(size=(50, 6)).astype(np.float32)
    nan[[2, 9]] = np.nan
    out["nan"] = tmp_path / "nan.npy"
    np.save(out["nan"], nan)
    out["empty"] = tmp_path / "empty.npy"
    np.save(out["empty"], np.zeros((0, 6), dtype=np.float32))
    out["policy"] = tmp_path / "gate.yaml"
    out["policy"].write_text(
        "rules:\n  - metric: fid\n    max: 1.0\n  - metric: recall\n    min: 0.5\n    on: ci_high\n"
    )
    return out


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AUDITOR_DATABASE_URL", database_url)
    monkeypatch.setenv("AUDITOR_HOME", str(tmp_path / "home"))
    return CliRunner()


def _audit(cli: CliRunner, *args: str | Path) -> tuple[int, str, str]:
    result = cli.invoke(app, ["audit", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def test_audit_passes_writes_json_and_is_in_history(
    cli: CliRunner, data: dict[str, Path], tmp_path: Path
) -> None:
    code, out, err = _audit(
        cli,
        "--real",
        data["real"],
        "--synthetic",
        data["synth"],
        "--holdout",
        data["holdout"],
        "--policy",
        data["policy"],
        "--project",
        "cli",
        "--json",
        "-",
        "--report",
        tmp_path / "r.html",
        *FAST,
    )
    assert code == 0, err
    document = json.loads(out)  # stdout is the document alone
    assert document["verdict"]["passed"] is True
    assert set(document["metrics"]) == {"fid", "precision", "recall", "coverage", "kid"}
    assert document["real"]["n"] == 200 and document["holdout"]["n"] == 200
    assert document["metrics"]["recall"]["baseline"] is not None
    assert "<svg" in (tmp_path / "r.html").read_text()

    history = cli.invoke(app, ["history", "--project", "cli", "--json", "-"])
    rows = json.loads(history.stdout)["audits"]
    assert [r["audit_id"] for r in rows] == [document["audit_id"]]
    assert rows[0]["state"] == "succeeded" and rows[0]["metrics"]["fid"] == pytest.approx(
        document["metrics"]["fid"]["value"]
    )
    shown = cli.invoke(app, ["show", document["audit_id"][:8], "--json", "-"])
    assert shown.exit_code == 0 and json.loads(shown.stdout) == document
    report = cli.invoke(app, ["show", document["audit_id"][:8], "--report", str(tmp_path / "again.html")])
    assert report.exit_code == 0 and (tmp_path / "again.html").read_text().count("<svg") >= 2


def test_gate_failure_exits_one_and_show_agrees(cli: CliRunner, data: dict[str, Path]) -> None:
    code, out, err = _audit(
        cli,
        "--real",
        data["real"],
        "--synthetic",
        data["far"],
        "--policy",
        data["policy"],
        "--json",
        "-",
        *FAST,
    )
    assert code == 1, err
    document = json.loads(out)
    assert document["verdict"]["passed"] is False
    assert {r["metric"] for r in document["verdict"]["rules"] if r["outcome"] == "fail"} == {"fid", "recall"}
    assert cli.invoke(app, ["show", document["audit_id"]]).exit_code == 1


def test_lineage_through_parent(cli: CliRunner, data: dict[str, Path], tmp_path: Path) -> None:
    _, out, _ = _audit(
        cli, "--real", data["real"], "--synthetic", data["synth"], "--generation", "3", "--json", "-", *FAST
    )
    parent = json.loads(out)["audit_id"]
    code, out, err = _audit(
        cli,
        "--real",
        data["real"],
        "--synthetic",
        data["synth"],
        "--parent",
        parent[:10],
        "--json",
        "-",
        *FAST,
    )
    assert code == 0, err
    child = json.loads(out)
    assert child["lineage"] == {"parent_audit_id": parent, "generation": 4}
    # A recorded audit's report carries its lineage's trend, as the API's /report does.
    report = tmp_path / "child.html"
    assert cli.invoke(app, ["show", child["audit_id"], "--report", str(report)]).exit_code == 0
    assert '<section id="trend">' in report.read_text() and "2 audits in this lineage" in report.read_text()


@pytest.mark.parametrize(
    ("case", "code_name"),
    [
        ("missing", "dataset_not_found"),
        ("nan", "dataset_format"),
        ("wide", "dimension_mismatch"),
        ("tiny", "too_few_samples"),
        ("empty", "too_few_samples"),
        ("unknown_metric", "bad_input"),
        ("policy_on_missing_metric", "invalid_policy"),
        ("unknown_parent", "not_found"),
        ("unknown_extractor", "unknown_name"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_two(
    cli: CliRunner, data: dict[str, Path], tmp_path: Path, case: str, code_name: str
) -> None:
    real, synth = data["real"], data["synth"]
    extra: list[str | Path] = list(FAST)
    if case == "missing":
        synth = tmp_path / "does-not-exist.npy"
    elif case in ("nan", "wide", "tiny", "empty"):
        synth = data[case]
    elif case == "unknown_metric":
        extra = ["--metrics", "fid,sharpness"]
    elif case == "policy_on_missing_metric":
        (tmp_path / "p.yaml").write_text("rules:\n  - metric: vendi\n    min: 2\n")
        extra += ["--policy", tmp_path / "p.yaml"]
    elif case == "unknown_parent":
        extra += ["--parent", "f" * 32]
    elif case == "unknown_extractor":
        extra += ["--extractor", "inception-v9"]
    code, out, err = _audit(cli, "--real", real, "--synthetic", synth, *extra)
    assert code == 2, (out, err)
    assert f"[{code_name}]" in err, err
    if case == "unknown_metric":
        assert "sharpness" in err and "errors.pydantic.dev" not in err, err
    assert "Traceback" not in err + out
    assert len([line for line in err.strip().splitlines() if line.startswith("error")]) == 1


def test_failed_audit_is_recorded_with_its_reason(cli: CliRunner, data: dict[str, Path]) -> None:
    code, _, _ = _audit(cli, "--real", data["real"], "--synthetic", data["nan"], "--project", "fails", *FAST)
    assert code == 2
    rows = json.loads(cli.invoke(app, ["history", "--project", "fails", "--json", "-"]).stdout)["audits"]
    assert len(rows) == 1 and rows[0]["state"] == "failed" and "NaN" in rows[0]["error"]


def test_console_script_exit_codes(data: dict[str, Path], tmp_path: Path) -> None:
    """The installed entry point, as a pipeline would call it: a real process and its exit status."""
    env = {**os.environ, "AUDITOR_HOME": str(tmp_path / "home")}
    exe = Path(sys.executable).parent / "auditor"

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, "audit", *args], capture_output=True, text=True, env=env, timeout=300)

    ok = run("--real", data["real"], "--synthetic", data["synth"], "--no-store", *FAST)
    assert ok.returncode == 0, ok.stderr
    gate = run(
        "--real", data["real"], "--synthetic", data["far"], "--no-store", "--policy", data["policy"], *FAST
    )
    assert gate.returncode == 1, gate.stderr
    usage = run("--real", data["real"])
    assert usage.returncode == 2 and "synthetic" in usage.stderr


@pytest.mark.slow
def test_demo_runs_generations_with_lineage(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["demo", "--workdir", str(tmp_path / "demo"), "--generations", "2"])
    assert result.exit_code == 0, result.output
    assert "Model collapse across generations" in result.stdout
    report = (tmp_path / "demo" / "report.html").read_text()
    assert "Across generations" in report
    rows = json.loads(cli.invoke(app, ["history", "--project", "digits-demo", "--json", "-"]).stdout)[
        "audits"
    ]
    assert sorted(r["generation"] for r in rows) == [0, 1, 2]
    by_generation = {r["generation"]: r for r in rows}
    # model collapse: the recursively trained generation drifts further and reaches less of the real data
    assert by_generation[2]["metrics"]["fid"] > by_generation[0]["metrics"]["fid"]
    assert by_generation[2]["metrics"]["recall"] < by_generation[0]["metrics"]["recall"]
    assert by_generation[0]["passed"] is True


def test_dataset_options_subsample_reproducibly(
    cli: CliRunner, data: dict[str, Path], tmp_path: Path
) -> None:
    outputs = []
    for run in range(2):
        out = tmp_path / f"sub{run}.json"
        code, _, err = _audit(
            cli, "--real", data["real"], "--synthetic", data["synth"], *FAST, "--option", "max_samples=120",
            "--option", "seed=3", "--json", out, "--no-store",
        )  # fmt: skip
        assert code == 0, err
        outputs.append(json.loads(out.read_text()))
    assert outputs[0]["real"]["n"] == outputs[0]["synthetic"]["n"] == 120
    assert outputs[0]["metrics"]["fid"]["value"] == outputs[1]["metrics"]["fid"]["value"]
    # The subsample has its own identity (cache key, history), distinct from the whole file's.
    from auditor.datasets.fingerprint import file_fingerprint

    assert outputs[0]["real"]["content_fingerprint"] == file_fingerprint(data["real"])
    assert outputs[0]["real"]["fingerprint"] != file_fingerprint(data["real"])


def test_malformed_option_is_bad_input(cli: CliRunner, data: dict[str, Path]) -> None:
    code, _, err = _audit(
        cli, "--real", data["real"], "--synthetic", data["synth"], "--option", "max_samples"
    )
    assert code == 2 and "KEY=VALUE" in err
    code, _, err = _audit(
        cli, "--real", data["real"], "--synthetic", data["synth"], "--option", "max_samples=-3"
    )
    assert code == 2 and "max_samples" in err


@pytest.mark.parametrize(
    ("kind", "expected"), [("npy", "precomputed"), ("csv", "tabular"), ("txt", "text-minilm")]
)
def test_without_extractor_the_data_decides_it(
    data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, expected: str
) -> None:
    monkeypatch.setenv("AUDITOR_HOME", str(tmp_path / "home"))
    sides = {}
    for side in ("real", "synth"):
        array = np.load(data[side])
        sides[side] = data[side] if kind == "npy" else tmp_path / f"{side}.{kind}"
        if kind == "csv":
            np.savetxt(sides[side], array, delimiter=",", header=",".join("abcdef"), comments="")
        elif kind == "txt":  # a small corpus: one text per line
            sides[side].write_text(
                "\n".join(f"sample {i} reads {row[0]:.3f}" for i, row in enumerate(array[:12]))
            )
    metrics = ["--metrics", "precision,recall", "--nearest-k", "3", "--bootstrap", "5"]
    code, out, err = _audit(
        CliRunner(),
        "--real",
        sides["real"],
        "--synthetic",
        sides["synth"],
        *metrics,
        "--no-store",
        "--json",
        "-",
    )
    assert code == 0, err
    assert json.loads(out)["extractor"]["name"] == expected
    # Named, it is used as given: here the wrong one for the data, so the audit is refused.
    other = "tabular" if expected != "tabular" else "precomputed"
    code, _, err = _audit(
        CliRunner(),
        "--real",
        sides["real"],
        "--synthetic",
        sides["synth"],
        "--extractor",
        other,
        *metrics,
        "--no-store",
    )
    assert code == 2 and ("[wrong_modality]" in err or "[dataset_format]" in err), err


def test_without_extractor_images_exit_two_listing_the_image_extractors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers.digit_images import digit_pixels, write_image_folder

    monkeypatch.setenv("AUDITOR_HOME", str(tmp_path / "home"))
    write_image_folder(tmp_path / "digits", digit_pixels(0, 4))
    code, out, err = _audit(
        CliRunner(), "--real", tmp_path / "digits", "--synthetic", tmp_path / "digits", "--no-store"
    )
    assert code == 2, (out, err)
    assert "error [extractor_required]" in err and "dinov2-vitb14 (recommended)" in err
    assert "inception-v3-fid" in err and "Traceback" not in err
