"""``run_audit`` end to end on images and text: digits PNG folders with ``inception-v3-fid`` (generated
weights, see tests/helpers/digit_images.py), .txt / .jsonl corpora with ``text-minilm``, the embedding
cache, and the modality check that runs before any model is touched."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.digit_images import digit_pixels, spec_for_file, write_image_folder
from helpers.pytorch_fid_reference import random_fid_state_dict, write_fid_weights_file

from auditor.artifacts import ArtifactStore
from auditor.datasets.refs import WrongModalityError
from auditor.extractors.inception import InceptionV3FidExtractor
from auditor.extractors.networks.inception import FID_INCEPTION_WEIGHTS
from auditor.metrics.warnings import SampleSizeWarning
from auditor.pipeline.evaluate import MetricParams
from auditor.pipeline.progress import RecordingProgress
from auditor.pipeline.run import AuditSpec, DatasetRef, run_audit

# 40 images a side: each costs ~0.1-0.2 s through the Inception on two CPU cores.
N_PER_SIDE = 40
QUICK_METRICS = MetricParams(metrics=("fid", "precision", "recall"), bootstrap=0, spectral_bootstrap=0)
WEIGHTS_SEED = 11


@pytest.fixture
def fid_weights(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = random_fid_state_dict(torch.Generator().manual_seed(WEIGHTS_SEED))
    path = write_fid_weights_file(tmp_path_factory.mktemp("torch_home"), state)
    monkeypatch.setattr(InceptionV3FidExtractor, "weights", spec_for_file(FID_INCEPTION_WEIGHTS, path))
    monkeypatch.setenv("AUDITOR_WEIGHTS_DIR", str(path.parent))
    return path


def noisy(pixels: np.ndarray, seed: int) -> np.ndarray:
    """A stand-in generator's output: the digits with grain, so the two sides differ measurably."""
    noise = np.random.default_rng(seed).normal(0, 40, pixels.shape)
    return np.clip(pixels + noise, 0, 255).astype(np.uint8)


def image_spec(real: Path, synthetic: Path, **synthetic_options: object) -> AuditSpec:
    return AuditSpec(
        real=DatasetRef(uri=str(real)),
        synthetic=DatasetRef(uri=str(synthetic), options=dict(synthetic_options)),
        extractor="inception-v3-fid",
        extractor_options={"batch_size": 20, "num_workers": 2},
        params=QUICK_METRICS,
        device="cpu",
    )


def test_digits_audit_with_inception_then_from_the_cache(fid_weights: Path, tmp_path: Path) -> None:
    write_image_folder(tmp_path / "real", digit_pixels(0, N_PER_SIDE))
    write_image_folder(tmp_path / "synthetic", noisy(digit_pixels(N_PER_SIDE, N_PER_SIDE), seed=0))
    (tmp_path / "synthetic" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    store = ArtifactStore(str(tmp_path / "artifacts"))
    progress = RecordingProgress()

    spec = image_spec(tmp_path / "real", tmp_path / "synthetic", max_bad_fraction=0.05)
    with pytest.warns(SampleSizeWarning, match="N < d"):  # 40 samples of 2048-d features, on purpose
        first = run_audit(spec, store=store, progress=progress).document
    assert (first["real"]["n"], first["synthetic"]["n"]) == (N_PER_SIDE, N_PER_SIDE)
    assert (first["real"]["dim"], first["extractor"]["name"]) == (2048, "inception-v3-fid")
    assert first["synthetic"]["skipped"]["counts"] == {"corrupt_image": 1}
    assert first["synthetic"]["skipped"]["examples"] == {"corrupt_image": ["zz_broken.png"]}
    assert not first["real"]["from_cache"] and not first["synthetic"]["from_cache"]
    fid = first["metrics"]["fid"]["value"]
    assert math.isfinite(fid) and fid > 0
    assert {"embed:real", "embed:synthetic"} <= set(progress.stages)

    # The same real folder, and a copy of it as the synthetic side: both sides are content-keyed hits.
    shutil.copytree(tmp_path / "real", tmp_path / "real-copy")
    with pytest.warns(SampleSizeWarning):
        second = run_audit(image_spec(tmp_path / "real", tmp_path / "real-copy"), store=store).document
    assert second["real"]["from_cache"] and second["synthetic"]["from_cache"]
    assert second["synthetic"]["n"] == N_PER_SIDE
    assert abs(second["metrics"]["fid"]["value"]) < 1e-3 * fid, "the same features on both sides"
    assert second["metrics"]["precision"]["value"] == 1.0


def test_text_audit_on_a_txt_and_a_jsonl_corpus(tmp_path: Path) -> None:
    subjects = ["The farmer", "A teacher", "The pilot", "My neighbour", "The chef"]
    actions = ["planted tomatoes", "read a novel", "fixed the roof", "painted the fence", "baked bread"]
    places = ["in the morning.", "near the river.", "after lunch.", "in the old town."]
    sentences = [f"{s} {a} {p}" for s in subjects for a in actions for p in places]  # 100
    (tmp_path / "real.txt").write_text("\n".join(sentences[::2]) + "\n", encoding="utf-8")
    records = [json.dumps({"text": text.replace("The", "A")}) for text in sentences[1::2]]
    records.insert(7, "{broken json")
    (tmp_path / "synthetic.jsonl").write_text("\n".join(records) + "\n", encoding="utf-8")
    spec = AuditSpec(
        real=DatasetRef(uri=str(tmp_path / "real.txt")),
        synthetic=DatasetRef(uri=str(tmp_path / "synthetic.jsonl")),
        extractor="text-minilm",
        params=QUICK_METRICS,
        device="cpu",
    )
    store = ArtifactStore(str(tmp_path / "artifacts"))
    with pytest.warns(SampleSizeWarning):
        document = run_audit(spec, store=store).document
    assert (document["real"]["n"], document["synthetic"]["n"]) == (50, 50)
    assert document["real"]["dim"] == 384 and document["extractor"]["name"] == "text-minilm"
    assert document["synthetic"]["skipped"]["counts"] == {"bad_json": 1}
    assert document["metrics"]["fid"]["value"] > 0
    assert 0 <= document["metrics"]["recall"]["value"] <= 1
    with pytest.warns(SampleSizeWarning):
        again = run_audit(spec, store=store).document
    assert again["real"]["from_cache"] and again["synthetic"]["from_cache"]
    assert again["metrics"]["fid"]["value"] == pytest.approx(document["metrics"]["fid"]["value"], rel=1e-9)


def test_a_text_corpus_is_refused_for_an_image_extractor_before_weights_are_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-weights"
    empty.mkdir()
    monkeypatch.setenv("AUDITOR_WEIGHTS_DIR", str(empty))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    (tmp_path / "a.txt").write_text("some text\nmore text\n", encoding="utf-8")
    write_image_folder(tmp_path / "digits", digit_pixels(0, 2))
    spec = AuditSpec(
        real=DatasetRef(uri=str(tmp_path / "digits")),
        synthetic=DatasetRef(uri=str(tmp_path / "a.txt")),
        extractor="inception-v3-fid",
        params=QUICK_METRICS,
        device="cpu",
    )
    with pytest.raises(WrongModalityError, match=r"inception-v3-fid.*a\.txt is text data"):
        run_audit(spec)
