"""Previews of the galleries' samples: re-read by key after scoring, bounded, stored with the audit, and
switched off by the audit spec or the operator.

End to end through ``run_audit`` on the three kinds a person recognises: scikit-learn's digits as PNG
folders (one folder per class: labels), text corpora, and the breast-cancer table; every preview is
checked against the sample its key names.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.digit_images import digit_pixels, encode_image, spec_for_file
from helpers.pytorch_fid_reference import random_fid_state_dict, write_fid_weights_file
from PIL import Image
from sklearn.datasets import load_breast_cancer, load_digits
from sqlalchemy.orm import Session, sessionmaker

from auditor.config import Settings
from auditor.datasets.refs import dataset_scope
from auditor.db import queries
from auditor.db.session import session_scope
from auditor.extractors.inception import InceptionV3FidExtractor
from auditor.extractors.networks.inception import FID_INCEPTION_WEIGHTS
from auditor.pipeline import previews as pv
from auditor.pipeline.evaluate import MetricParams
from auditor.pipeline.run import AuditSpec, DatasetRef, run_audit
from auditor.pipeline.stages import load_reference
from auditor.report.service import render_audit_report

# Lossy WebP at quality 80 on flat grey digits: the mean absolute error per channel stays a few levels.
THUMBNAIL_TOLERANCE = 12.0
NEIGHBOURS = MetricParams(
    metrics=("precision", "coverage", "memorization_rate", "duplicate_rate", "mode_coverage"),
    nearest_k=3,
    bootstrap=0,
    num_modes=4,
)


@pytest.fixture
def fid_weights(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Seeded random weights for the FID Inception (as tests/pipeline/test_image_text_audits.py)."""
    state = random_fid_state_dict(torch.Generator().manual_seed(11))
    path = write_fid_weights_file(tmp_path_factory.mktemp("torch_home"), state)
    monkeypatch.setattr(InceptionV3FidExtractor, "weights", spec_for_file(FID_INCEPTION_WEIGHTS, path))
    monkeypatch.setenv("AUDITOR_WEIGHTS_DIR", str(path.parent))
    return path


@pytest.fixture(autouse=True)
def previews_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AUDITOR_PREVIEWS", raising=False)
    yield


def audit(spec: AuditSpec, factory: sessionmaker[Session] | None = None) -> Any:
    scope = (lambda: session_scope(factory)) if factory is not None else None
    return run_audit(spec, session_scope=scope)


def decode_thumbnail(preview: dict[str, Any]) -> np.ndarray:
    assert preview["kind"] == "image" and preview["media_type"] == "image/webp"
    with Image.open(io.BytesIO(base64.b64decode(preview["data"]))) as image:
        assert image.format == "WEBP" and max(image.size) <= pv.THUMBNAIL_PX
        assert image.size == (preview["width"], preview["height"])
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def write_digit_classes(
    root: Path, start: int, count: int, extra: dict[str, int] | None = None
) -> dict[str, np.ndarray]:
    """Digits ``start..start+count-1`` as ``root/<class>/<index>.png`` (labels: folder); ``extra``: more
    files, by key, copying digit ``n``. Returns every file's pixels by key."""
    classes = load_digits().target
    written = {}
    for n, pixels in zip(range(start, start + count), digit_pixels(start, count), strict=True):
        written[f"{classes[n]}/{n:04d}.png"] = pixels
    for key, n in (extra or {}).items():
        written[key] = digit_pixels(n, 1)[0]
    for key, pixels in written.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(encode_image(pixels, "png"))
    return written


def test_digit_galleries_show_each_image_by_its_own_thumbnail(fid_weights: Path, tmp_path: Path) -> None:
    classes = load_digits().target
    real = write_digit_classes(tmp_path / "real", 0, 40)
    # Thirty fresh digits, and two exact copies of real images under other names.
    copies = {f"{classes[5]}/copy-a.png": 5, f"{classes[11]}/copy-b.png": 11}
    synthetic = write_digit_classes(tmp_path / "synthetic", 40, 30, copies)
    folder = {"labels": "folder"}
    spec = AuditSpec(
        real=DatasetRef(uri=str(tmp_path / "real"), options=folder),
        synthetic=DatasetRef(uri=str(tmp_path / "synthetic"), options=folder),
        extractor="inception-v3-fid",
        extractor_options={"batch_size": 32, "num_workers": 0},
        params=NEIGHBOURS,
        device="cpu",
    )
    result = audit(spec)
    info = result.document["diagnostics"]["previews"]
    assert info["omitted"] is None and info["failed"] == 0 and 0 < info["count"] <= pv.MAX_PREVIEWS
    [stored] = [a for a in result.artifacts if a.name == pv.ARTIFACT_NAME]
    assert pv.decode_previews(stored.content) == result.previews

    galleries = result.report.galleries
    closest = {(c["synthetic"]["key"], c["real"]["key"]) for c in galleries["copies"][:2]}
    assert closest == {
        (f"{classes[5]}/copy-a.png", f"{classes[5]}/0005.png"),
        (f"{classes[11]}/copy-b.png", f"{classes[11]}/0011.png"),
    }

    # Every preview is the image its key names: nearer to that file than to any other of its side.
    files = {"real": real, "synthetic": synthetic}
    checked = 0
    for side, previews in result.previews.items():
        keys = list(files[side])
        stack = np.stack([files[side][key].astype(np.float64) for key in keys])[..., None].repeat(3, axis=-1)
        for preview in previews.values():
            pixels = decode_thumbnail(preview)
            errors = np.abs(stack - pixels).mean(axis=(1, 2, 3))
            own = keys.index(preview["key"])
            assert errors[own] < THUMBNAIL_TOLERANCE, (side, preview["key"], errors[own])
            assert int(np.argmin(errors)) == own or errors[int(np.argmin(errors))] == errors[own]
            assert preview["label"] == preview["key"].split("/")[0]
            checked += 1
    assert checked == info["count"]
    # The per-mode bars are named by what the modes are: the majority digit of each.
    modes = galleries["modes"]
    assert len(modes) == 4 and all(entry["label"] in {str(d) for d in range(10)} for entry in modes)
    assert all(str(entry["medoid"]["index"]) in result.previews["real"] for entry in modes)


def test_text_galleries_quote_the_lines_their_keys_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    subjects = ["The farmer", "A teacher", "The pilot", "My neighbour", "The chef"]
    actions = ["planted tomatoes", "read a novel", "fixed the roof", "painted the fence", "baked bread"]
    places = ["in the morning.", "near the river.", "after lunch.", "in the old town."]
    sentences = [f"{s} {a} {p}" for s in subjects for a in actions for p in places]
    real = sentences[::2]
    long_line = "A very long synthetic sentence " + "that keeps going " * 40 + "and ends."
    synthetic = [*(text.replace("The", "A") for text in sentences[1:80:2]), real[5], real[30], long_line]
    (tmp_path / "real.txt").write_text("\n".join(real) + "\n", encoding="utf-8")
    (tmp_path / "synthetic.txt").write_text("\n".join(synthetic) + "\n", encoding="utf-8")
    spec = AuditSpec(
        real=DatasetRef(uri=str(tmp_path / "real.txt")),
        synthetic=DatasetRef(uri=str(tmp_path / "synthetic.txt")),
        extractor="text-minilm",
        params=NEIGHBOURS,
        device="cpu",
    )
    with caplog.at_level(logging.DEBUG):
        result = audit(spec)
    lines = {"real": real, "synthetic": synthetic}
    for side, previews in result.previews.items():
        for preview in previews.values():
            text = lines[side][int(preview["key"].removeprefix("line ")) - 1]
            assert preview["kind"] == "text" and preview["chars"] == len(text)
            if preview["truncated"]:
                assert len(preview["text"]) == pv.TEXT_CHARS and text.startswith(preview["text"][:-1])
            else:
                assert preview["text"] == text
    copies = result.report.galleries["copies"][:2]
    assert {(c["synthetic"]["key"], c["real"]["key"]) for c in copies} == {
        ("line 41", "line 6"),
        ("line 42", "line 31"),
    }
    assert result.previews["synthetic"]["40"]["text"] == real[5]
    # Previews never reach the logs.
    assert not any(line in caplog.text for line in (real[5], real[30]))


COPIED_ROWS = (19, 20)  # benign rows of the real table


def breast_cancer() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.copy()
    frame["target"] = [str(data.target_names[t]) for t in frame["target"]]
    return frame


def table_spec(tmp_path: Path, **extra: Any) -> AuditSpec:
    frame = breast_cancer()
    real = frame.iloc[:300].reset_index(drop=True)
    rest = frame.iloc[300:]
    # Only benign tumours, and copies of two real (benign) rows at the end.
    synthetic = pd.concat([rest[rest["target"] == "benign"], real.iloc[list(COPIED_ROWS)]], ignore_index=True)
    real.to_csv(tmp_path / "real.csv", index=False)
    synthetic.to_csv(tmp_path / "synthetic.csv", index=False)
    return AuditSpec(
        real=DatasetRef(uri=str(tmp_path / "real.csv")),
        synthetic=DatasetRef(uri=str(tmp_path / "synthetic.csv")),
        extractor="tabular",
        params=NEIGHBOURS,
        **extra,
    )


def test_table_galleries_show_rows_and_the_report_names_the_lost_class(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    spec = table_spec(tmp_path)
    result = audit(spec, session_factory)
    real = pd.read_csv(tmp_path / "real.csv")
    synthetic = pd.read_csv(tmp_path / "synthetic.csv")
    frames = {"real": real, "synthetic": synthetic}
    for side, previews in result.previews.items():
        for index, preview in previews.items():
            assert preview["kind"] == "row" and preview["key"] == index
            cells = dict(preview["cells"])
            assert len(cells) == pv.ROW_COLUMNS and preview["more_columns"] == 31 - pv.ROW_COLUMNS
            row = frames[side].iloc[int(index)]
            assert cells["mean radius"] == f"{row['mean radius']:.6g}"
    # The two copied rows are the closest copies, beside their real rows.
    copies = result.report.galleries["copies"][:2]
    assert sorted((c["synthetic"]["index"], c["real"]["index"]) for c in copies) == [
        (len(synthetic) - 2, COPIED_ROWS[0]),
        (len(synthetic) - 1, COPIED_ROWS[1]),
    ]
    [lost] = [c for c in result.report.table_drift["categories"] if c["column"] == "target"]
    assert (lost["category"], lost["status"], lost["synthetic_share"]) == ("malignant", "lost", 0.0)

    # Stored with the audit, and in its report (as the API and `auditor show --report` render it).
    with session_scope(session_factory) as session:
        names = [a.name for a in queries.audit_artifacts(session, result.audit_id)]
        assert names == [pv.ARTIFACT_NAME, "samples/real.parquet", "samples/synthetic.parquet"]
        html = render_audit_report(
            session, queries.get_audit(session, result.audit_id), Settings(previews=True)
        )
        hidden = render_audit_report(
            session, queries.get_audit(session, result.audit_id), Settings(previews=False)
        )
    assert 'id="galleries"' in html and 'id="columns"' in html
    assert "<code>target</code> = malignant" in html
    some_value = f"{real.iloc[COPIED_ROWS[0]]['mean radius']:.6g}"
    assert 'class="preview-row"' in html and f"<dd>{some_value}</dd>" in html
    # The operator's switch withholds previews already stored: the galleries show keys only.
    assert 'class="preview-row"' not in hidden and f"<dd>{some_value}</dd>" not in hidden
    assert 'id="galleries"' in hidden and pv.OPERATOR_OFF in hidden


def test_previews_switched_off_in_the_spec_are_not_made(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    result = audit(table_spec(tmp_path, previews=False), session_factory)
    assert result.previews == {} and pv.ARTIFACT_NAME not in [a.name for a in result.artifacts]
    assert result.document["diagnostics"]["previews"] == {
        "count": 0,
        "failed": 0,
        "capped": 0,
        "omitted": pv.SPEC_OFF,
    }
    assert result.report.galleries["copies"]  # the galleries stay, by key
    with session_scope(session_factory) as session:
        assert queries.audit_artifact(session, result.audit_id, pv.ARTIFACT_NAME) is None
        html = render_audit_report(session, queries.get_audit(session, result.audit_id), Settings())
    assert 'class="preview-row"' not in html and pv.SPEC_OFF in html


def test_previews_switched_off_by_the_operator_are_not_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDITOR_PREVIEWS", "off")
    result = audit(table_spec(tmp_path))  # the spec asks for them; the operator's word wins
    assert result.previews == {} and pv.ARTIFACT_NAME not in [a.name for a in result.artifacts]
    assert result.document["diagnostics"]["previews"]["omitted"] == pv.OPERATOR_OFF


def test_previews_count_against_the_artifact_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITOR_MAX_ARTIFACT_MB", "0")
    with pytest.warns(Warning):
        result = audit(table_spec(tmp_path))
    assert result.artifacts == [] and result.previews  # made for this process's report, not stored
    assert "AUDITOR_MAX_ARTIFACT_MB=0" in result.document["diagnostics"]["previews"]["omitted"]


def test_previews_are_bounded_in_count_and_bytes(tmp_path: Path) -> None:
    lines = [f"sample number {i} says something different" for i in range(700)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with dataset_scope():
        loaded = {"synthetic": load_reference("synthetic", DatasetRef(uri=str(tmp_path / "corpus.txt")))}
        keys = {"synthetic": loaded["synthetic"].resolved.sample_keys()}  # type: ignore[union-attr]
        refs = [("synthetic", i) for i in range(700)] + [("synthetic", 3)]  # a repeat is not counted twice
        made = pv.make_previews(loaded, refs, keys)
        assert made.count == pv.MAX_PREVIEWS and made.capped == 700 - pv.MAX_PREVIEWS and made.failed == 0
        assert [int(i) for i in made.items["synthetic"]] == list(range(pv.MAX_PREVIEWS))  # in order
        assert made.items["synthetic"]["12"]["text"] == lines[12]
        small = pv.make_previews(loaded, refs, keys, max_bytes=2000)
        assert 0 < small.count < 30 and len(pv.encode_previews(small).content) < 2000 + 200


def test_thumbnails_shrink_keep_their_aspect_and_fall_back_to_png(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    photo = encode_image(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8), "jpg")
    preview = pv.thumbnail(photo)
    assert (preview["width"], preview["height"]) == (96, 64) and preview["media_type"] == "image/webp"
    small = pv.thumbnail(encode_image(digit_pixels(0, 1)[0], "png"))
    assert (small["width"], small["height"]) == (32, 32)  # never enlarged: the report scales it crisply
    from PIL import features

    monkeypatch.setattr(features, "check", lambda name: False)
    fallback = pv.thumbnail(photo)
    assert fallback["media_type"] == "image/png"
    assert base64.b64decode(fallback["data"]).startswith(b"\x89PNG")
    with pytest.raises(Exception):  # noqa: B017  (the caller counts whatever Pillow raises)
        pv.thumbnail(b"not an image")


def test_text_and_row_previews_are_truncated() -> None:
    text = pv.text_preview("x" * 1000)
    assert text["truncated"] and len(text["text"]) == pv.TEXT_CHARS and text["text"].endswith(pv.ELLIPSIS)
    row = pv.row_preview([f"c{i}" for i in range(20)], ["y" * 100, 1.23456789, float("nan"), *range(17)])
    assert len(row["cells"]) == pv.ROW_COLUMNS and row["more_columns"] == 4
    assert row["cells"][0] == ["c0", "y" * (pv.CELL_CHARS - 1) + pv.ELLIPSIS]
    assert row["cells"][1:3] == [["c1", "1.23457"], ["c2", ""]]


def test_the_notebook_report_shows_previews_unless_asked_not_to() -> None:
    import auditor

    frame = breast_cancer()
    real, synthetic = frame.iloc[:300], frame.iloc[300:]
    params = {"metrics": list(NEIGHBOURS.metrics), "nearest_k": 3, "bootstrap": 0, "num_modes": 4}
    shown = auditor.audit(real, synthetic, **params)
    assert 'class="preview-row"' in shown.report_html() and 'id="columns"' in shown.report_html()
    hidden = auditor.audit(real, synthetic, previews=False, **params)
    assert 'class="preview-row"' not in hidden.report_html()
    assert hidden.document["diagnostics"]["previews"]["omitted"] == pv.SPEC_OFF
