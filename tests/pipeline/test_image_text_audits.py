"""``run_audit`` end to end on images and text: digits PNG folders with ``inception-v3-fid`` (generated
weights, see tests/helpers/digit_images.py), .txt / .jsonl corpora with ``text-minilm``, the embedding
cache, and the modality check that runs before any model is touched."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers.digit_images import digit_pixels, spec_for_file, write_image_folder
from helpers.pytorch_fid_reference import random_fid_state_dict, write_fid_weights_file

from auditor.artifacts import ArtifactStore
from auditor.datasets.refs import WrongModalityError
from auditor.errors import DatasetFormatError
from auditor.extractors.inception import InceptionV3FidExtractor
from auditor.extractors.networks.inception import FID_INCEPTION_WEIGHTS
from auditor.metrics.warnings import SampleSizeWarning
from auditor.pipeline.evaluate import MetricParams
from auditor.pipeline.progress import RecordingProgress
from auditor.pipeline.run import AuditSpec, DatasetRef, run_audit
from auditor.pipeline.stages import assemble_shards, cache_key, embed_shard, embed_side, load_sides, prepare

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

    # The first audit's synthetic side again, now from the cache: its skip report is the stored one.
    with pytest.warns(SampleSizeWarning):
        third = run_audit(spec, store=store).document
    assert third["synthetic"]["from_cache"]
    assert third["synthetic"]["skipped"] == first["synthetic"]["skipped"]


def sharded_side_features(fid_weights: Path, folder: Path, store: ArtifactStore, max_bad: float) -> Any:
    """``folder`` as the synthetic side embedded in 2 shards (as two GPU workers would), assembled, then
    read back as the scoring worker does."""
    spec = image_spec(folder, folder, max_bad_fraction=max_bad)
    prepared = prepare(spec)
    for index in range(2):  # each shard in a process of its own: fresh datasets every time
        loaded = load_sides(spec, extractor=prepared.extractor)
        embed_shard(prepared.extractor, loaded, "synthetic", index, 2, store=store)
    loaded = load_sides(spec, extractor=prepared.extractor)
    key = cache_key(prepared.extractor, loaded["synthetic"], loaded["real"])
    assert key is not None
    assemble_shards(store, key, 2)
    features = embed_side(prepared.extractor, loaded, "synthetic", store=store)
    assert loaded["synthetic"].resolved is not None
    return features, loaded["synthetic"].resolved.skipped


def test_sharded_sides_merge_their_skip_reports_and_enforce_the_limit_on_the_whole_side(
    fid_weights: Path, tmp_path: Path
) -> None:
    # 10 samples, sorted so that the 3 broken ones all fall into the first shard of 5 (60% of it).
    folder = tmp_path / "images"
    write_image_folder(folder, digit_pixels(0, 7))
    for name in ("0000a.png", "0000b.png", "0000c.png"):
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n truncated")

    features, skipped = sharded_side_features(fid_weights, folder, ArtifactStore(str(tmp_path / "a")), 0.35)
    assert tuple(features.features.shape) == (7, 2048)  # 30% overall: within the limit
    assert (skipped.seen, skipped.counts) == (10, {"corrupt_image": 3})
    assert skipped.examples["corrupt_image"] == ["0000a.png", "0000b.png", "0000c.png"]

    with pytest.raises(DatasetFormatError, match="3 of 10 samples"):
        sharded_side_features(fid_weights, folder, ArtifactStore(str(tmp_path / "b")), 0.25)


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
