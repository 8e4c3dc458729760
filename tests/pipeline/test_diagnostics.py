"""Per-sample diagnostics equal the metrics they explain, exactly, and name the right rows.

On Gaussians with a holdout (every kNN metric and its baseline), on tie-heavy data (copies, duplicated
rows, one-hot tables: tests/helpers/tied_data.py, checked against its brute-force reference too), under
a permutation of the input rows, and end to end through ``run_audit`` on tables, text and images, with
the tables stored in the database and read back.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.digit_images import digit_pixels, spec_for_file, write_image_folder
from helpers.pytorch_fid_reference import random_fid_state_dict, write_fid_weights_file
from helpers.tied_data import reference_graph, scenario
from sqlalchemy.orm import Session, sessionmaker

from auditor import samples
from auditor.db import queries
from auditor.db.session import session_scope
from auditor.extractors.inception import InceptionV3FidExtractor
from auditor.extractors.networks.inception import FID_INCEPTION_WEIGHTS
from auditor.metrics import KNN_METRICS
from auditor.metrics.warnings import DiagnosticsWarning
from auditor.pipeline.evaluate import Evaluation, MetricParams, evaluate
from auditor.pipeline.run import AuditSpec, DatasetRef, run_audit
from auditor.report.html import render_report

K = 5
# The brute-force reference sums squared differences in NumPy's order, the engine in torch's: the last
# bits differ (tests/metrics/test_knn_exact.py). Flags and counts are compared exactly.
DISTANCE_RTOL = 1e-12
EVERYTHING = MetricParams(nearest_k=K, bootstrap=0, spectral_bootstrap=0, kid_subset_size=50)
KNN_ONLY = MetricParams(metrics=tuple(sorted(KNN_METRICS)), nearest_k=K, bootstrap=0, spectral_bootstrap=0)


def explained(evaluation: Evaluation, side: str = "synthetic") -> dict[str, float]:
    """Every kNN metric recomputed from the diagnostics columns alone (the holdout side: baselines)."""
    s = evaluation.samples[side]
    r = evaluation.samples["real"]
    out = {
        "precision": s["in_real_support"].mean(),
        "density": s["real_ball_count"].mean() / K,
        "duplicate_rate": s["duplicate"].mean(),
        "memorization_rate": s["memorized"].mean(),
        "authenticity": s["authentic"].mean(),
    }
    if side == "synthetic":  # the holdout's recall/coverage baselines live on the holdout graph's real side
        out["recall"] = r["in_synthetic_manifold"].mean()
        out["coverage"] = r["covered"].mean()
        out["tail_recall"] = r["in_synthetic_manifold"][r["tail"]].mean()
    return {name: float(value) for name, value in out.items()}


def assert_explains(evaluation: Evaluation, side: str = "synthetic") -> None:
    for name, value in explained(evaluation, side).items():
        metric = evaluation.metrics[name]
        expected = metric.value if side == "synthetic" else metric.baseline
        if name == "density":  # a mean of multiples of 1/k: the same up to the order of the sum
            assert value == pytest.approx(expected, rel=1e-12, abs=0), (name, value, expected)
        else:  # means of 0/1 flags: exact
            assert value == expected, (name, value, expected)


def gaussians(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    real = torch.randn(400, 8, generator=gen)
    synthetic = torch.randn(350, 8, generator=gen) * 0.9 + 0.2
    synthetic[:25] = real[100:125]  # near-copies
    holdout = torch.randn(300, 8, generator=gen)
    return real, synthetic, holdout


def test_gaussians_every_flag_averages_to_its_metric_and_baseline() -> None:
    real, synthetic, holdout = gaussians()
    evaluation = evaluate(real, synthetic, holdout, EVERYTHING)
    assert_explains(evaluation)
    assert_explains(evaluation, "holdout")
    s, r = evaluation.samples["synthetic"], evaluation.samples["real"]
    assert (
        len(s["index"]) == 350
        and len(r["index"]) == 400
        and len(evaluation.samples["holdout"]["index"]) == 300
    )
    assert np.array_equal(s["index"], np.arange(350))
    # The copies: memorized, at distance 0 from the very real row they copy.
    assert s["memorized"][:25].all() and np.array_equal(s["nearest_real_index"][:25], np.arange(100, 125))
    assert (s["nearest_real_distance"][:25] == 0).all() and (s["nearest_real_ratio"][:25] == 0).all()
    assert not s["authentic"][:25].any()
    # Modes: the k-means labels, whose histogram is the one mode_jsd compares.
    k = evaluation.details["num_modes"]
    assert s["mode"].min() >= 0 and s["mode"].max() < k and r["mode"].min() >= 0
    share = np.bincount(s["mode"], minlength=k) / 350
    assert np.allclose(share, evaluation.report.mode_synthetic_share)
    # The tail is the largest radii, the documented fraction (ties included).
    assert r["tail"].sum() >= math.ceil(0.1 * 400)
    assert r["knn_radius"][r["tail"]].min() >= r["knn_radius"][~r["tail"]].max()
    # The twin: another synthetic row (input order), at the reported distance.
    twin = s["nearest_synthetic_index"]
    assert (twin != np.arange(350)).all()
    own = synthetic.double().numpy()
    at = np.sqrt(((own - own[twin]) ** 2).sum(axis=1))
    np.testing.assert_allclose(at, s["nearest_synthetic_distance"], rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "name",
    [
        "exact_copies",
        "copies_of_a_subset_with_fresh_rows",
        "duplicated_real_rows",
        "duplicated_synthetic_rows",
        "fully_collapsed_synthetic",
        "one_hot_table",
        "integer_lattice_shifted_by_one",
    ],
)
def test_tie_heavy_data_every_flag_averages_to_its_metric_and_matches_brute_force(name: str) -> None:
    real, synthetic = scenario(name)
    evaluation = evaluate(real, synthetic, params=KNN_ONLY)
    assert_explains(evaluation)
    reference = reference_graph(real, synthetic, K)
    s, r = evaluation.samples["synthetic"], evaluation.samples["real"]
    np.testing.assert_allclose(
        s["nearest_real_distance"], np.sqrt(reference.synthetic_nearest_real_sq), rtol=DISTANCE_RTOL, atol=0
    )
    np.testing.assert_allclose(
        s["nearest_synthetic_distance"], np.sqrt(reference.synthetic_nearest_sq), rtol=DISTANCE_RTOL, atol=0
    )
    assert np.array_equal(s["real_ball_count"], reference.synthetic_real_ball_count)
    assert np.array_equal(r["covered"], reference.real_ball_covered)
    assert np.array_equal(r["in_synthetic_manifold"], reference.real_in_synthetic_ball)
    np.testing.assert_allclose(
        r["nearest_synthetic_distance"],
        np.sqrt(reference.real_nearest_synthetic_sq),
        rtol=DISTANCE_RTOL,
        atol=0,
    )
    twin = s["nearest_synthetic_index"]
    own = synthetic.double().numpy()
    assert (twin != np.arange(len(twin))).all()
    twin_sq = ((own - own[twin]) ** 2).sum(axis=1)
    np.testing.assert_allclose(twin_sq, reference.synthetic_nearest_sq, rtol=DISTANCE_RTOL, atol=0)
    for row, index in enumerate(s["nearest_real_index"]):
        assert index in reference.synthetic_nearest_real_candidates[row], (row, index)
    # The ratio's stated edge cases: 0/0 is NaN, x/0 is inf, and authentic is exact regardless.
    own = np.sqrt(reference.real_nearest_sq)[s["nearest_real_index"]]
    distance = s["nearest_real_distance"]
    assert np.isnan(s["nearest_real_ratio"][(own == 0) & (distance == 0)]).all()
    assert np.isposinf(s["nearest_real_ratio"][(own == 0) & (distance > 0)]).all()
    finite = own > 0
    np.testing.assert_allclose(
        s["nearest_real_ratio"][finite], distance[finite] / own[finite], rtol=DISTANCE_RTOL
    )


def test_rows_keep_their_input_position_under_any_permutation() -> None:
    real, synthetic, _ = gaussians(1)
    real = torch.cat([real, real[:30]])  # duplicated real rows: ties in the nearest-real choice
    gen = torch.Generator().manual_seed(9)
    p_real, p_synth = torch.randperm(len(real), generator=gen), torch.randperm(len(synthetic), generator=gen)
    base = evaluate(real, synthetic, params=EVERYTHING)
    permuted = evaluate(real[p_real], synthetic[p_synth], params=EVERYTHING)
    for side, perm in (("synthetic", p_synth), ("real", p_real)):
        a, b = base.samples[side], permuted.samples[side]
        for column, values in a.items():
            if values is None or column in ("index", "nearest_real_index", "nearest_synthetic_index"):
                continue
            # Row i of the permuted input is row perm[i] of the original: the same sample, the same values.
            assert np.array_equal(b[column], values[perm.numpy()], equal_nan=True), (side, column)
    # The nearest real sample is the same sample (the same row, or an identical one).
    a, b = base.samples["synthetic"], permuted.samples["synthetic"]
    assert torch.equal(real[p_real][b["nearest_real_index"]], real[a["nearest_real_index"]][p_synth])
    twin_a, twin_b = a["nearest_synthetic_index"], b["nearest_synthetic_index"]
    assert torch.equal(synthetic[p_synth][twin_b], synthetic[twin_a][p_synth])


def test_without_knn_metrics_the_neighbour_columns_are_null_and_modes_stay() -> None:
    real, synthetic, _ = gaussians(2)
    evaluation = evaluate(real, synthetic, params=MetricParams(metrics=("fid", "mode_jsd"), bootstrap=0))
    assert evaluation.samples_computed == {"knn": False, "modes": True}
    s = evaluation.samples["synthetic"]
    assert s["memorized"] is None and s["nearest_real_index"] is None and s["mode"].min() >= 0
    no_modes = evaluate(real, synthetic, params=KNN_ONLY)
    assert (no_modes.samples["real"]["mode"] == -1).all()


# --- end to end: run_audit on real formats, stored and read back --------------------------------------


def audit(spec: AuditSpec, factory: sessionmaker[Session] | None = None) -> Any:
    scope = (lambda: session_scope(factory)) if factory is not None else None
    return run_audit(spec, session_scope=scope)


def flagged_keys(result: Any, side: str, flag: str) -> list[str]:
    table = samples.select(result.samples[side], samples.SampleQuery(side=side, flag=flag))
    return [str(key) for key in table.column("key").to_pylist()]


def test_permuted_files_flag_the_same_samples_by_key(tmp_path: Path) -> None:
    real, synthetic, _ = gaussians(3)
    order = np.random.default_rng(4).permutation(len(synthetic))
    np.save(tmp_path / "real.npy", real.numpy())
    np.save(tmp_path / "synthetic.npy", synthetic.numpy())
    np.save(tmp_path / "shuffled.npy", synthetic.numpy()[order])
    params = MetricParams(metrics=("memorization_rate", "precision"), bootstrap=0)
    results = [
        audit(
            AuditSpec(
                real=DatasetRef(uri=str(tmp_path / "real.npy")),
                synthetic=DatasetRef(uri=str(path)),
                params=params,
            )
        )
        for path in (tmp_path / "synthetic.npy", tmp_path / "shuffled.npy")
    ]
    original, shuffled = (flagged_keys(result, "synthetic", "memorized") for result in results)
    assert {str(i) for i in range(25)} <= set(original)
    # Key k of the shuffled file is row order[k] of the original: the same samples are flagged.
    assert sorted(int(order[int(key)]) for key in shuffled) == sorted(int(key) for key in original)
    copied = results[1].samples["synthetic"].to_pydict()
    for key, nearest in zip(copied["key"], copied["nearest_real_key"], strict=True):
        if int(order[int(key)]) < 25:
            assert nearest == str(100 + int(order[int(key)]))


def test_a_tabular_audit_names_copied_rows_and_stores_its_tables(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    rng = np.random.default_rng(6)
    frame = pd.DataFrame(
        {"x": rng.normal(size=160), "y": rng.normal(size=160), "c": rng.choice(["a", "b", "c"], 160)}
    )
    real, synthetic = frame.iloc[:100].reset_index(drop=True), frame.iloc[100:].reset_index(drop=True)
    synthetic = pd.concat([synthetic, real.iloc[[3, 17, 42]]], ignore_index=True)  # rows 60-62 copy real
    real.to_csv(tmp_path / "real.csv", index=False)
    synthetic.to_csv(tmp_path / "synthetic.csv", index=False)
    spec = AuditSpec(
        real=DatasetRef(uri=str(tmp_path / "real.csv")),
        synthetic=DatasetRef(uri=str(tmp_path / "synthetic.csv")),
        extractor="tabular",
        params=MetricParams(metrics=("precision", "coverage", "memorization_rate"), bootstrap=0),
    )
    result = audit(spec, session_factory)
    table = result.samples["synthetic"]
    memorized = samples.select(table, samples.SampleQuery(flag="memorized")).to_pydict()
    assert {"60", "61", "62"} <= set(memorized["key"])
    assert dict(zip(memorized["key"], memorized["nearest_real_key"], strict=True))["61"] == "17"
    assert len(memorized["key"]) / 63 == result.document["metrics"]["memorization_rate"]["value"]

    info = result.document["diagnostics"]
    assert (
        info["artifacts"] == ["samples/synthetic.parquet", "samples/real.parquet"] and info["omitted"] is None
    )
    with session_scope(session_factory) as session:
        # Beside the tables, the previews of the report's galleries (tests/pipeline/test_previews.py).
        names = [a.name for a in queries.audit_artifacts(session, result.audit_id)]
        assert names == ["report/previews.json", "samples/real.parquet", "samples/synthetic.parquet"]
        stored = queries.audit_artifacts(session, result.audit_id)[1:]
        assert sum(a.size for a in stored) == info["bytes"]
        assert all(a.media_type == samples.MEDIA_TYPE and len(a.sha256) == 64 for a in stored)
        read = samples.read_table(session, queries.get_audit(session, result.audit_id), "synthetic")
    assert read.equals(table)


def test_over_the_size_bound_nothing_is_stored_but_the_result_keeps_its_tables(
    tmp_path: Path, session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    real, synthetic, _ = gaussians(5)
    np.save(tmp_path / "real.npy", real.numpy())
    np.save(tmp_path / "synthetic.npy", synthetic.numpy())
    monkeypatch.setenv("AUDITOR_MAX_ARTIFACT_MB", "0")
    spec = AuditSpec(
        real=DatasetRef(uri=str(tmp_path / "real.npy")),
        synthetic=DatasetRef(uri=str(tmp_path / "synthetic.npy")),
        params=MetricParams(metrics=("precision",), bootstrap=0),
    )
    with pytest.warns(DiagnosticsWarning, match="AUDITOR_MAX_ARTIFACT_MB=0"):
        result = audit(spec, session_factory)
    assert result.artifacts == [] and result.samples["synthetic"].num_rows == 350
    info = result.document["diagnostics"]
    assert (
        info["artifacts"] == [] and "over AUDITOR_MAX_ARTIFACT_MB=0" in info["omitted"] and info["bytes"] > 0
    )
    assert result.document["warnings"][-1]["category"] == "DiagnosticsWarning"
    with session_scope(session_factory) as session:
        assert queries.audit_artifacts(session, result.audit_id) == []


def test_a_text_audit_keys_rows_by_line(tmp_path: Path) -> None:
    subjects = ["The farmer", "A teacher", "The pilot", "My neighbour", "The chef"]
    actions = ["planted tomatoes", "read a novel", "fixed the roof", "painted the fence", "baked bread"]
    places = ["in the morning.", "near the river.", "after lunch.", "in the old town."]
    sentences = [f"{s} {a} {p}" for s in subjects for a in actions for p in places]
    real = sentences[::2]
    synthetic = [*(text.replace("The", "A") for text in sentences[1:80:2]), "", real[5], real[30]]
    (tmp_path / "real.txt").write_text("\n".join(real) + "\n", encoding="utf-8")
    (tmp_path / "synthetic.txt").write_text("\n".join(synthetic) + "\n", encoding="utf-8")
    spec = AuditSpec(
        real=DatasetRef(uri=str(tmp_path / "real.txt")),
        synthetic=DatasetRef(uri=str(tmp_path / "synthetic.txt")),
        extractor="text-minilm",
        params=MetricParams(metrics=("memorization_rate", "precision"), bootstrap=0),
        device="cpu",
    )
    result = audit(spec)
    table = samples.select(result.samples["synthetic"], samples.SampleQuery(flag="memorized")).to_pydict()
    # Line 41 is blank (skipped): the copies are lines 42 and 43, of real lines 6 and 31.
    assert dict(zip(table["key"], table["nearest_real_key"], strict=True)) == {
        "line 42": "line 6",
        "line 43": "line 31",
    }
    assert result.samples["synthetic"].num_rows == 42
    # The latent map's points carry the same keys, for a preview on hover.
    report = result.report
    keys = result.samples["synthetic"].column("key").to_pylist()
    assert report.projection_synthetic_key == [keys[i] for i in report.projection_synthetic_index]
    assert report.projection_real_key[:3] == [f"line {i + 1}" for i in report.projection_real_index[:3]]
    html = render_report(result.document, report)
    assert 'data-key="line 42"' in html and 'data-key="line 1"' in html


@pytest.fixture
def fid_weights(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Seeded random weights for the FID Inception (as tests/pipeline/test_image_text_audits.py)."""
    state = random_fid_state_dict(torch.Generator().manual_seed(11))
    path = write_fid_weights_file(tmp_path_factory.mktemp("torch_home"), state)
    monkeypatch.setattr(InceptionV3FidExtractor, "weights", spec_for_file(FID_INCEPTION_WEIGHTS, path))
    monkeypatch.setenv("AUDITOR_WEIGHTS_DIR", str(path.parent))
    return path


def test_an_image_audit_keys_rows_by_file_even_with_a_corrupt_one(fid_weights: Path, tmp_path: Path) -> None:
    write_image_folder(tmp_path / "real", digit_pixels(0, 12))
    # Eleven fresh digits and, as 0011.png, a copy of real 0004.png; a corrupt file sorts among them.
    write_image_folder(tmp_path / "synthetic", [*digit_pixels(12, 11), digit_pixels(4, 1)[0]])
    (tmp_path / "synthetic" / "0005_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    spec = AuditSpec(
        real=DatasetRef(uri=str(tmp_path / "real")),
        synthetic=DatasetRef(uri=str(tmp_path / "synthetic"), options={"max_bad_fraction": 0.1}),
        extractor="inception-v3-fid",
        extractor_options={"batch_size": 16, "num_workers": 0},
        params=MetricParams(metrics=("memorization_rate", "precision"), nearest_k=3, bootstrap=0),
        device="cpu",
    )
    result = audit(spec)
    assert result.document["synthetic"]["skipped"]["counts"] == {"corrupt_image": 1}
    keys = result.samples["synthetic"].column("key").to_pylist()
    assert keys == [f"{i:04d}.png" for i in range(12)]  # the skipped file has no row, and no key
    table = samples.select(result.samples["synthetic"], samples.SampleQuery(order="nearest_real_distance"))
    closest = table.slice(0, 2).to_pylist()
    assert (closest[0]["key"], closest[0]["nearest_real_key"], closest[0]["memorized"]) == (
        "0011.png",
        "0004.png",
        True,
    )
    assert closest[0]["nearest_real_distance"] == 0.0 < closest[1]["nearest_real_distance"]
