"""Which extractor an audit uses when none is named: told from each side's modality, without reading it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.digit_images import digit_pixels, write_image_folder

from auditor.datasets.refs import WrongModalityError
from auditor.errors import ExtractorRequiredError
from auditor.extractors.inference import image_extractors, infer_extractor
from auditor.pipeline.spec import DatasetRef

IMAGE_EXTRACTORS = ["dinov2-vitb14", "clip-vit-b32", "dinov2-vitl14", "inception-v3-fid"]


def both(uri: str, **options: object) -> dict[str, DatasetRef]:
    ref = DatasetRef(uri=uri, options=dict(options))
    return {"real": ref, "synthetic": ref}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A file of every kind the inference reads beyond its name (parquet's schema, folders)."""
    rng = np.random.default_rng(0)
    table = tmp_path / "table.parquet"
    pd.DataFrame({"age": rng.normal(size=20), "city": ["a", "b"] * 10}).to_parquet(table)
    embeddings = tmp_path / "embeddings.parquet"
    pd.DataFrame({"id": range(20), "vector": list(rng.normal(size=(20, 4)))}).to_parquet(embeddings)
    folder = tmp_path / "images"
    write_image_folder(folder, digit_pixels(0, 3))
    return {"table.parquet": table, "embeddings.parquet": embeddings, "images": folder}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("real.npy", "precomputed"),
        ("real.npz", "precomputed"),
        ("real.pt", "precomputed"),
        ("real.pth", "precomputed"),
        ("embeddings.parquet", "precomputed"),
        ("real.csv", "tabular"),
        ("table.parquet", "tabular"),
        ("corpus.txt", "text-minilm"),
        ("CORPUS.JSONL", "text-minilm"),
        ("corpus.ndjson", "text-minilm"),
        ("s3://bucket/real.npy", "precomputed"),
        ("https://example.com/data/real.csv?token=abc", "tabular"),
    ],
)
def test_each_format_gets_the_extractor_of_its_modality(
    files: dict[str, Path], tmp_path: Path, name: str, expected: str
) -> None:
    # Files named by suffix alone need not exist: the name decides, nothing is read.
    uri = str(files[name]) if name in files else name if "://" in name else str(tmp_path / name)
    assert infer_extractor(both(uri)) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "images",
        "images.zip",
        "images.tar.gz",
        "shard-{000..003}.tar",
        "s3://bucket/faces/",
        "gs://bucket/faces",
    ],
)
def test_images_need_the_extractor_named_and_the_error_lists_the_image_extractors(
    files: dict[str, Path], uri: str
) -> None:
    reference = str(files["images"]) if uri == "images" else uri
    with pytest.raises(ExtractorRequiredError) as caught:
        infer_extractor(both(reference))
    error = caught.value
    assert error.code == "extractor_required" and error.exit_code == 2 and error.http_status == 422
    assert error.details["extractors"] == IMAGE_EXTRACTORS == image_extractors()
    assert error.details["recommended"] == "dinov2-vitb14"
    assert all(name in error.message for name in IMAGE_EXTRACTORS), error.message
    assert repr(reference) in error.message and "--extractor" in error.message


def test_sides_of_different_kinds_are_refused_naming_each(tmp_path: Path) -> None:
    sides = {
        "real": DatasetRef(uri=str(tmp_path / "real.csv")),
        "synthetic": DatasetRef(uri=str(tmp_path / "synthetic.npy")),
        "holdout": DatasetRef(uri=str(tmp_path / "holdout.csv")),
    }
    with pytest.raises(WrongModalityError) as caught:
        infer_extractor(sides)
    assert caught.value.code == "wrong_modality"
    assert caught.value.details["modalities"] == {
        "real": "table",
        "synthetic": "embeddings",
        "holdout": "table",
    }
    assert "real is table (csv), synthetic is embeddings (npy)" in caught.value.message


def test_the_modality_option_and_an_explicit_format_win_over_the_name(
    files: dict[str, Path], tmp_path: Path
) -> None:
    assert infer_extractor(both(str(files["embeddings.parquet"]), modality="table")) == "tabular"
    assert infer_extractor(both("s3://bucket/data.parquet", modality="table")) == "tabular"
    assert infer_extractor({"real": DatasetRef(uri=str(tmp_path / "data.bin"), format="csv")}) == "tabular"
    with pytest.raises(ExtractorRequiredError):
        infer_extractor({"real": DatasetRef(uri=str(tmp_path / "data.bin"), format="zip")})


def test_sides_that_cannot_be_told_without_reading_them_do_not_vote(tmp_path: Path) -> None:
    table = str(tmp_path / "real.csv")
    # A remote parquet file (embeddings or table: its schema is remote), a local path that is not there,
    # bad options: the other sides decide...
    for unknown in (
        DatasetRef(uri="s3://bucket/synthetic.parquet"),
        DatasetRef(uri=str(tmp_path / "missing")),
        DatasetRef(uri=str(tmp_path / "synthetic.csv"), options={"max_samples": 0}),
    ):
        assert infer_extractor({"real": DatasetRef(uri=table), "synthetic": unknown}) == "tabular"
    # ...and when none can, the audit runs with precomputed and reports what is wrong with the data.
    assert infer_extractor(both(str(tmp_path / "missing"))) == "precomputed"
    assert infer_extractor(both("s3://bucket/data.parquet")) == "precomputed"
