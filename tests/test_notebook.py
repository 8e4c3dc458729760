"""``auditor.audit`` from Python: every input kind through the real pipeline, history only with a project,
the result object, its HTML, its errors, and the docstring examples."""

from __future__ import annotations

import dataclasses
import doctest
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers.digit_images import digit_pixels, write_image_folder

import auditor
import auditor.notebook
from auditor.cli.common import Database
from auditor.config import get_settings
from auditor.datasets.readers import DatasetFormatError
from auditor.db import queries
from auditor.errors import AuditorError, BadInputError, ExtractorRequiredError, UnknownNameError
from auditor.notebook import AuditOutcome, MetricEstimate
from auditor.pipeline.evaluate import MetricParams, evaluate
from auditor.pipeline.result import AuditResult
from auditor.policy import Policy

FAST = {"bootstrap": 20, "spectral_bootstrap": 3, "seed": 1, "kid_subset_size": 100}
TEXTS = [
    "The river flooded the valley after three days of rain.",
    "A new bakery opened on the corner of the market square.",
    "The orchestra rehearsed the symphony until late at night.",
    "Researchers measured the temperature of the deep ocean.",
    "The cyclist climbed the mountain pass before sunrise.",
    "Children built a snowman in the school playground.",
]


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private AUDITOR_HOME and temporary-files directory, and no database configured."""
    monkeypatch.setenv("AUDITOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AUDITOR_DATABASE_URL", raising=False)
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    return temp


@pytest.fixture
def gaussians() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "real": rng.normal(size=(240, 6)),  # float64: audited in float32, as every embedding file is
        "synthetic": rng.normal(loc=0.2, size=(240, 6)),
        "holdout": rng.normal(size=(240, 6)),
    }


def metric_docs(result: AuditOutcome) -> dict[str, dict[str, object]]:
    return result.document["metrics"]


def test_numpy_arrays_score_exactly_as_evaluate_does_on_the_same_arrays(
    scratch: Path, gaussians: dict[str, np.ndarray]
) -> None:
    result = auditor.audit(
        gaussians["real"], gaussians["synthetic"], gaussians["holdout"], nearest_k=3, **FAST
    )
    direct = evaluate(
        *(torch.from_numpy(gaussians[side].astype(np.float32)) for side in ("real", "synthetic", "holdout")),
        MetricParams(nearest_k=3, **FAST),
    )
    assert list(result.metrics) == list(direct.metrics) == list(MetricParams().metrics)
    for name, expected in direct.metrics.items():
        got = result.metrics[name]
        assert (got.value, got.ci_low, got.ci_high, got.baseline) == (
            expected.value,
            expected.ci_low,
            expected.ci_high,
            expected.baseline,
        ), name
        assert got.extra == expected.extra, name
    document = result.document
    assert document["extractor"]["name"] == "precomputed"
    assert [document[side]["n"] for side in ("real", "synthetic", "holdout")] == [240, 240, 240]
    assert Path(document["real"]["reference"]).name == "real-ndarray.npy"
    assert list(scratch.iterdir()) == [], "the temporary inputs are removed when the audit ends"


def test_torch_tensors_audit_as_the_same_numbers_in_numpy(
    scratch: Path, gaussians: dict[str, np.ndarray]
) -> None:
    real = torch.from_numpy(gaussians["real"])  # float64 on purpose
    synthetic = torch.from_numpy(gaussians["synthetic"].astype(np.float32))
    from_tensors = auditor.audit(real, synthetic, metrics="fid,precision,kid", **FAST)
    from_arrays = auditor.audit(
        gaussians["real"], gaussians["synthetic"], metrics="fid,precision,kid", **FAST
    )
    assert metric_docs(from_tensors) == metric_docs(from_arrays)
    assert Path(from_tensors.document["synthetic"]["reference"]).name == "synthetic-tensor.npy"
    # The content, not the temporary path, identifies the data: the two audits are one protocol.
    assert from_tensors.document["real"]["fingerprint"] == from_arrays.document["real"]["fingerprint"]
    assert from_tensors.document["protocol"] == from_arrays.document["protocol"]


def test_dataframes_are_tables_audited_as_their_parquet_files_are(scratch: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)

    def frame(shift: float) -> pd.DataFrame:
        # A non-string column name and a meaningful index: neither may break or enter the table.
        data = {
            "age": rng.normal(40 + shift, 5, 150),
            "city": rng.choice(["a", "b", "c"], 150),
            7: rng.integers(0, 3, 150),
        }
        return pd.DataFrame(data, index=rng.permutation(150))

    real, synthetic = frame(0.0), frame(2.0)
    result = auditor.audit(real, synthetic, metrics=["precision", "recall", "fid"], **FAST)
    assert result.document["extractor"]["name"] == "tabular"
    assert result.document["real"]["format"] == "parquet" and result.document["real"]["dim"] == 5

    paths = {}
    for side, data in (("real", real), ("synthetic", synthetic)):
        paths[side] = tmp_path / f"{side}.parquet"
        data.rename(columns=str).to_parquet(paths[side], index=False)
    from_files = auditor.audit(
        paths["real"], str(paths["synthetic"]), metrics=["precision", "recall", "fid"], **FAST
    )
    assert metric_docs(result) == metric_docs(from_files)


def test_lists_of_strings_are_texts_embedded_by_text_minilm(scratch: Path, tmp_path: Path) -> None:
    real, synthetic = TEXTS, [*TEXTS[3:], *TEXTS[:3]]
    result = auditor.audit(real, synthetic, metrics="precision,recall", nearest_k=2, **FAST)
    assert result.document["extractor"]["name"] == "text-minilm"
    assert result.document["real"]["dim"] == 384 and result.document["real"]["format"] == "jsonl"
    # The same texts as files, one a line: the same audit.
    for side, texts in (("real", real), ("synthetic", synthetic)):
        (tmp_path / f"{side}.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    from_files = auditor.audit(
        tmp_path / "real.txt", tmp_path / "synthetic.txt", metrics="precision,recall", nearest_k=2, **FAST
    )
    assert metric_docs(result) == metric_docs(from_files)
    assert result.metrics["precision"].value == 1.0  # the same sentences, reordered


def test_a_text_holding_a_newline_stays_one_sample(scratch: Path) -> None:
    texts = [*TEXTS[:3], "two lines\nin one text", *TEXTS[3:]]
    result = auditor.audit(texts, texts, metrics="precision", nearest_k=2, bootstrap=0)
    assert result.document["real"]["n"] == result.document["synthetic"]["n"] == len(texts)


def test_paths_npy_and_csv_as_the_cli_takes_them(
    scratch: Path, tmp_path: Path, gaussians: dict[str, np.ndarray]
) -> None:
    for side in ("real", "synthetic"):
        np.save(tmp_path / f"{side}.npy", gaussians[side].astype(np.float32))
        pd.DataFrame(gaussians[side], columns=list("abcdef")).to_csv(tmp_path / f"{side}.csv", index=False)
    npy = auditor.audit(
        tmp_path / "real.npy", f"file://{tmp_path / 'synthetic.npy'}", metrics="fid,coverage", **FAST
    )
    assert npy.document["extractor"]["name"] == "precomputed"
    assert metric_docs(npy) == metric_docs(
        auditor.audit(gaussians["real"], gaussians["synthetic"], metrics="fid,coverage", **FAST)
    )
    csv = auditor.audit(
        str(tmp_path / "real.csv"), tmp_path / "synthetic.csv", metrics="fid,coverage", **FAST
    )
    assert csv.document["extractor"]["name"] == "tabular" and csv.document["real"]["format"] == "csv"
    # An explicit extractor is used as given.
    explicit = auditor.audit(
        tmp_path / "real.npy", tmp_path / "synthetic.npy", extractor="precomputed", metrics="fid", **FAST
    )
    assert explicit.document["extractor"]["name"] == "precomputed"


def test_an_image_folder_without_extractor_is_a_clear_error_listing_the_image_extractors(
    scratch: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "digits"
    write_image_folder(folder, digit_pixels(0, 6))
    with pytest.raises(ExtractorRequiredError) as caught:
        auditor.audit(folder, str(folder))
    assert caught.value.code == "extractor_required"
    assert (
        "dinov2-vitb14 (recommended), clip-vit-b32, dinov2-vitl14, inception-v3-fid" in caught.value.message
    )
    assert isinstance(caught.value, auditor.AuditorError)


def test_without_a_project_nothing_is_written(
    scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gaussians: dict[str, np.ndarray]
) -> None:
    database = tmp_path / "db" / "auditor.db"
    monkeypatch.setenv("AUDITOR_DATABASE_URL", f"sqlite:///{database}")
    result = auditor.audit(gaussians["real"], gaussians["synthetic"], metrics="fid", **FAST)
    assert result.recorded is False and result.project == "default"
    assert not database.parent.exists() and not (tmp_path / "home").exists()
    assert list(scratch.iterdir()) == []


def test_with_a_project_the_audit_is_recorded_like_the_cli_records_it(
    scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gaussians: dict[str, np.ndarray]
) -> None:
    monkeypatch.setenv("AUDITOR_DATABASE_URL", f"sqlite:///{tmp_path / 'history.db'}")
    first = auditor.audit(
        gaussians["real"], gaussians["synthetic"], metrics="fid,recall", project="nb", tags=["x"], **FAST
    )
    second = auditor.audit(
        gaussians["real"],
        gaussians["holdout"],
        metrics="fid,recall",
        project="nb",
        parent=first.audit_id[:8],
        **FAST,
    )
    assert first.recorded and second.recorded and first.project == "nb"
    database = Database(get_settings())
    try:
        with database.scope() as session:
            rows = queries.list_audits(session, project="nb")
            assert [row.id for row in rows] == [second.audit_id, first.audit_id]
            assert all(row.state == "succeeded" for row in rows)
            assert rows[1].result == first.document and rows[1].tags == ["x"]
            assert (rows[0].parent_audit_id, rows[0].generation) == (first.audit_id, 1)
            assert queries.audit_metrics(session, first.audit_id)["fid"].value == first.metrics["fid"].value
    finally:
        database.engine.dispose()

    bad = gaussians["synthetic"].copy()
    bad[5] = np.nan
    with pytest.raises(DatasetFormatError, match="NaN"):
        auditor.audit(gaussians["real"], bad, metrics="fid", project="nb", **FAST)
    database = Database(get_settings())
    try:
        with database.scope() as session:
            failed = queries.list_audits(session, project="nb")[0]
            assert failed.state == "failed" and "NaN" in (failed.error_message or "")
    finally:
        database.engine.dispose()


def test_a_policy_as_a_path_a_dict_or_a_policy_object(
    scratch: Path, tmp_path: Path, gaussians: dict[str, np.ndarray]
) -> None:
    rules = {
        "name": "gate",
        "rules": [{"metric": "fid", "max": 1e-9}, {"metric": "recall", "min": 0.1, "on": "ci_low"}],
    }
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(rules))
    verdicts = [
        auditor.audit(
            gaussians["real"], gaussians["synthetic"], metrics="fid,recall", policy=policy, **FAST
        ).verdict
        for policy in (path, str(path), rules, Policy.from_dict(rules))
    ]
    assert all(verdict == verdicts[0] for verdict in verdicts)
    assert verdicts[0]["passed"] is False and verdicts[0]["failed"] == 1 and verdicts[0]["policy"] == "gate"
    with pytest.raises(BadInputError, match="policy must be"):
        auditor.audit(gaussians["real"], gaussians["synthetic"], policy=42)  # type: ignore[arg-type]


def test_the_result_object(scratch: Path, gaussians: dict[str, np.ndarray]) -> None:
    result = auditor.audit(
        gaussians["real"], gaussians["synthetic"], gaussians["holdout"], metrics="kid,recall", **FAST
    )
    kid = result.metrics["kid"]
    assert isinstance(kid, MetricEstimate) and kid.name == "kid" and kid.higher_is_better is False
    assert kid.interval == (kid.ci_low, kid.ci_high) and kid.baseline is not None
    assert set(kid.extra) == {"std", "subset_size"}
    assert str(result.metrics["recall"]).startswith("recall = ")
    with pytest.raises(dataclasses.FrozenInstanceError):
        kid.value = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.metrics["kid"] = kid  # type: ignore[index]
    assert result.passed is None and result.verdict["rules"] == []
    assert result.to_dict() == result.document and result.to_dict() is not result.document
    copied = result.to_dict()
    copied["metrics"]["kid"]["value"] = -1.0
    assert result.document["metrics"]["kid"]["value"] == kid.value
    assert repr(result).startswith(
        f"<AuditOutcome {result.audit_id[:12]} project='default' extractor='precomputed'"
    )


def test_repr_html_is_the_report_in_a_sandboxed_frame(
    scratch: Path, gaussians: dict[str, np.ndarray]
) -> None:
    result = auditor.audit(gaussians["real"], gaussians["synthetic"], metrics="fid,precision,recall", **FAST)
    shown = result._repr_html_()
    frame = re.fullmatch(r'<iframe title="[^"]*" sandbox="" style="[^"]*" srcdoc="([^"]*)"></iframe>', shown)
    assert frame is not None, shown[:300]
    page = html.unescape(frame.group(1))
    assert page == result.report_html()
    assert '<section id="metrics">' in page and "precision" in page and result.audit_id in page
    # Self-contained: no script, nothing fetched.
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)


def test_save_report_writes_the_standalone_page(
    scratch: Path, tmp_path: Path, gaussians: dict[str, np.ndarray]
) -> None:
    result = auditor.audit(gaussians["real"], gaussians["synthetic"], metrics="fid,coverage", **FAST)
    path = result.save_report(tmp_path / "reports" / "audit.html")
    assert path == tmp_path / "reports" / "audit.html"
    assert path.read_text(encoding="utf-8") == result.report_html()
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"nearst_k": 3}, UnknownNameError, "unknown parameter 'nearst_k'; did you mean 'nearest_k'?"),
        ({"bootstraps": 3}, UnknownNameError, "did you mean 'bootstrap'?"),
        ({"extracter": "tabular"}, UnknownNameError, "did you mean 'extractor'?"),
        (
            {"metrics": "fid,precison"},
            UnknownNameError,
            "unknown metric 'precison'; did you mean 'precision'?",
        ),
        (
            {"bootstrap": -1},
            BadInputError,
            "invalid parameters: bootstrap: Input should be greater than or equal to 0",
        ),
        ({"device": "gpu"}, BadInputError, "invalid audit: device"),
        ({"extractor": "inception-v9"}, UnknownNameError, "unknown extractor 'inception-v9'"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_arguments_are_clear_errors_before_any_work(
    scratch: Path, params: dict[str, object], error: type[AuditorError], message: str
) -> None:
    with pytest.raises(error) as caught:
        auditor.audit(np.zeros((10, 2)), np.zeros((10, 2)), **params)
    assert message in caught.value.message
    assert "errors.pydantic.dev" not in caught.value.message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"a": 1}, "cannot audit a builtins.dict as the synthetic dataset"),
        (np.array([["a", "b"]] * 10), "the synthetic array holds <U1 values"),
        ([], "the synthetic list of texts is empty"),
        ([1.0, 2.0], "cannot audit a builtins.list"),
    ],
)
def test_inputs_that_are_no_dataset_are_refused(scratch: Path, data: object, message: str) -> None:
    with pytest.raises(BadInputError) as caught:
        auditor.audit(np.zeros((10, 2)), data)
    assert message in caught.value.message
    assert list(scratch.iterdir()) == []


def test_samples_are_the_per_sample_diagnostics_filtered_as_auditor_samples_filters_them(
    scratch: Path,
) -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 4)).astype(np.float32)
    copies = real[:20] + 1e-6  # near-copies of the first 20 real samples
    synthetic = np.concatenate([copies, rng.normal(size=(180, 4)).astype(np.float32)])
    result = auditor.audit(real, synthetic, metrics="precision,memorization_rate", bootstrap=5)
    every = result.samples()
    assert len(every) == 200 and every["index"].tolist() == list(range(200))
    memorized = result.samples("synthetic", flag="memorized")
    assert set(range(20)) <= set(memorized["index"]) and memorized["memorized"].all()
    assert memorized["nearest_real_index"].tolist()[:20] == list(range(20))
    with pytest.raises(BadInputError, match="no per-sample diagnostics for side 'holdout'"):
        result.samples("holdout")
    with pytest.raises(BadInputError, match="unknown flag 'memorised'"):
        result.samples("synthetic", flag="memorised")


def test_samples_without_per_sample_diagnostics_says_so(
    scratch: Path, gaussians: dict[str, np.ndarray]
) -> None:
    result = auditor.audit(gaussians["real"], gaussians["synthetic"], metrics="fid", **FAST)
    bare = AuditOutcome(AuditResult(document=result.document, report=result._result.report))
    with pytest.raises(NotImplementedError, match="no per-sample diagnostics"):
        bare.samples("synthetic", flag="memorized")


def test_the_docstring_examples_run(scratch: Path) -> None:
    outcome = doctest.testmod(auditor.notebook, optionflags=doctest.ELLIPSIS, report=True)
    assert outcome.attempted >= 20 and outcome.failed == 0
