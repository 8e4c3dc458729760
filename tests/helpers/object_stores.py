"""Checks shared by the object-store tests (``s3://`` against moto, ``gs://`` against a GCS emulator):
the same assertions for every scheme, given an fsspec filesystem on the test bucket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from auditor.artifacts import ArtifactStore
from auditor.datasets.images import decode_sample
from auditor.datasets.refs import resolve_dataset
from auditor.datasets.uri import SchemeNotAllowedError
from auditor.errors import DatasetNotFoundError
from helpers.digit_images import digit_pixels, write_image_folder, write_zip


def check_reads_like_local(fs: Any, scheme: str, bucket: str, tmp_path: Path, other_scheme: str) -> None:
    """An image folder, a zip of it and an .npy file under ``scheme://bucket`` resolve like their local
    copies (same keys, same content fingerprint); the scheme must be enabled to be read at all."""
    n = 12
    local = tmp_path / "digits"
    write_image_folder(local, digit_pixels(0, n))
    for file in sorted(local.iterdir()):
        fs.pipe(f"{bucket}/digits/{file.name}", file.read_bytes())
    fs.pipe(f"{bucket}/digits.zip", write_zip(tmp_path / "digits.zip", local).read_bytes())
    np.save(tmp_path / "emb.npy", np.arange(12, dtype=np.float32).reshape(4, 3))
    fs.pipe(f"{bucket}/emb.npy", (tmp_path / "emb.npy").read_bytes())
    root, downloads = f"{scheme}://{bucket}", tmp_path / "dl"

    with pytest.raises(SchemeNotAllowedError, match=f"'{scheme}' is not enabled"):
        resolve_dataset(f"{root}/digits", allowed_schemes={other_scheme})
    folder = resolve_dataset(f"{root}/digits", allowed_schemes={scheme})
    same = resolve_dataset(str(local))
    assert (folder.scheme, folder.format, folder.n_samples) == (scheme, "image_folder", n)
    assert folder.sample_keys() == same.sample_keys()
    assert folder.content_fingerprint == same.content_fingerprint, "the same bytes, wherever they live"
    decoded = decode_sample(folder.image_samples()[3])
    assert decoded.reason is None and decoded.image is not None

    archive = resolve_dataset(f"{root}/digits.zip", allowed_schemes={scheme}, download_dir=downloads)
    assert (archive.format, archive.n_samples) == ("zip", n)
    embeddings = resolve_dataset(f"{root}/emb.npy", allowed_schemes={scheme}, download_dir=downloads)
    assert embeddings.local_path is not None and np.load(embeddings.local_path).shape == (4, 3)
    with pytest.raises(DatasetNotFoundError):
        resolve_dataset(f"{root}/missing.npy", allowed_schemes={scheme}, download_dir=downloads)


def check_artifact_store(fs: Any, scheme: str, bucket: str) -> None:
    """An artifact store under ``scheme://bucket/artifacts``: round trip, metadata, no temporary object
    left, and an array overwritten behind its manifest's back is a miss, never trusted."""
    store = ArtifactStore(f"{scheme}://{bucket}/artifacts")
    array = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    assert store.try_get_array("embeddings/x/abc") is None
    store.put_array("embeddings/x/abc", array, {"side": "real"})
    assert store.has_array("embeddings/x/abc")
    np.testing.assert_array_equal(store.get_array("embeddings/x/abc"), array)
    assert store.get_meta("embeddings/x/abc") == {"side": "real"}
    assert not fs.glob(f"{bucket}/artifacts/**/*.tmp*"), "no temporary object left behind"
    fs.pipe(f"{bucket}/artifacts/embeddings/x/abc.npy", b"not the array")
    assert store.try_get_array("embeddings/x/abc") is None
    manifest = json.loads(fs.cat(f"{bucket}/artifacts/embeddings/x/abc.json"))
    assert manifest["shape"] == [50, 8]
