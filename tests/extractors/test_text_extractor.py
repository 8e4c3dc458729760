"""``text-minilm`` on real .txt and .jsonl files: rows, order, skipped lines, model choice, identity, errors.

The reference is the sentence encoder itself (its parity with sentence-transformers is
tests/extractors/test_text_encoder.py's job): the extractor must add nothing to it but reading the files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers.digit_images import digit_pixels, write_image_folder

from auditor.datasets.refs import WrongModalityError
from auditor.extractors import EXTRACTORS, get_extractor
from auditor.extractors.base import FeatureExtractor, LoadedDataset
from auditor.extractors.images import ExtractorOptionError
from auditor.extractors.text import MiniLMTextExtractor
from auditor.extractors.text_encoder import SentenceEncoder, TextModelError, default_model_dir
from auditor.pipeline.progress import NullProgress, RecordingProgress
from auditor.pipeline.spec import DatasetRef
from auditor.pipeline.stages import cache_key, load_reference

# sha256 of all-MiniLM-L6-v2's model.safetensors (the Hugging Face Hub LFS object id).
MINILM_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SENTENCES = [
    "The river flooded the valley after three days of rain.",
    "A new bakery opened on the corner of the market square.",
    "The orchestra rehearsed the symphony until late at night.",
    "Researchers measured the temperature of the deep ocean.",
    "The cyclist climbed the mountain pass before sunrise.",
    "Children built a snowman in the school playground.",
    "The committee approved the budget for the new library.",
    "A comet was visible in the northern sky last week.",
]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder.from_package()


def load(path: Path, side: str = "real", **options: object) -> LoadedDataset:
    return load_reference(side, DatasetRef(uri=str(path), options=dict(options)))


def test_txt_lines_embed_in_file_order_exactly_as_the_encoder_does(
    tmp_path: Path, encoder: SentenceEncoder
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    progress = RecordingProgress()
    features = MiniLMTextExtractor({"batch_size": 3}).embed(load(corpus), progress)
    assert features.shape == (len(SENTENCES), 384) and features.dtype == torch.float32
    assert torch.equal(features, encoder.encode(SENTENCES, batch_size=3))
    assert progress.events[0] == ("start", "embed:real", len(SENTENCES))
    assert sum(n for kind, _, n in progress.events if kind == "advance") == len(SENTENCES)
    assert progress.events[-1][:2] == ("finish", "embed:real")


def test_jsonl_skipped_lines_stay_in_the_dataset_report_and_get_no_row(
    tmp_path: Path, encoder: SentenceEncoder
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    lines = [json.dumps({"body": text, "id": i}) for i, text in enumerate(SENTENCES)]
    lines[2] = "{not json"
    lines[5] = json.dumps({"id": 5})
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dataset = load(corpus, text_field="body", max_bad_fraction=0.3)
    features = MiniLMTextExtractor({}).embed(dataset, NullProgress())
    kept = [text for i, text in enumerate(SENTENCES) if i not in (2, 5)]
    assert torch.equal(features, encoder.encode(kept))
    assert dataset.resolved is not None
    assert dataset.resolved.skipped.counts == {"bad_json": 1, "missing_text_field": 1}


def test_a_local_model_dir_is_used_and_named_by_its_weights(tmp_path: Path, encoder: SentenceEncoder) -> None:
    copy = shutil.copytree(default_model_dir(), tmp_path / "my-minilm")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES[:3]), encoding="utf-8")
    extractor = MiniLMTextExtractor({"model_dir": str(copy)})
    assert torch.equal(extractor.embed(load(corpus), NullProgress()), encoder.encode(SENTENCES[:3]))
    described = extractor.describe()
    assert described["weights_sha256"] == MINILM_WEIGHTS_SHA256
    assert described["preprocessing"]["model"] == "my-minilm"
    packaged = MiniLMTextExtractor({}).describe()
    assert packaged["preprocessing"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    dataset = load(corpus)
    assert cache_key(extractor, dataset, dataset) != cache_key(MiniLMTextExtractor({}), dataset, dataset), (
        "another model name is another identity, even with the same weights"
    )


def test_describe_is_the_identity_without_the_device() -> None:
    described = MiniLMTextExtractor({"device": "cpu"}).describe()
    assert described == MiniLMTextExtractor({"device": "cuda:0", "batch_size": 5}).describe()
    assert described == {
        "name": "text-minilm",
        "version": "1",
        "dim": 384,
        "weights_sha256": MINILM_WEIGHTS_SHA256,
        "preprocessing": {
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "max_seq_length": 256,
            "pooling": "mean",
            "normalize": True,
        },
    }


def test_an_image_dataset_is_refused_before_the_model_is_loaded(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "digits", digit_pixels(0, 2))
    # A model directory that does not exist: the modality check must come first.
    extractor = MiniLMTextExtractor({"model_dir": str(tmp_path / "missing")})
    with pytest.raises(WrongModalityError, match=r"'text-minilm' reads text data.*image data"):
        extractor.embed(load(tmp_path / "digits"), NullProgress())


def test_a_missing_model_dir_fails_at_first_use_not_construction(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one line\n", encoding="utf-8")
    extractor = get_extractor("text-minilm", {"model_dir": str(tmp_path / "missing")})
    with pytest.raises(TextModelError):
        extractor.embed(load(corpus), NullProgress())


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ExtractorOptionError, match="model_path"):
        get_extractor("text-minilm", {"model_path": "/somewhere"})


def test_registered_as_a_cacheable_text_extractor() -> None:
    extractor = EXTRACTORS["text-minilm"]({})
    assert isinstance(extractor, FeatureExtractor)
    assert (extractor.modality, extractor.accepts) == ("text", frozenset({"text"}))  # type: ignore[attr-defined]
    assert extractor.cacheable and not extractor.fits_on_real  # type: ignore[attr-defined]
