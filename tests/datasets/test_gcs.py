"""``gs://`` references and a ``gs://`` artifact store, through gcsfs over HTTP to a local Cloud Storage
emulator (gcp-storage-emulator; no real bucket is reachable from here). gcsfs finds it through
``STORAGE_EMULATOR_HOST``, its documented switch for emulators."""

from __future__ import annotations

import os

# gcsfs picks its filesystem class when imported; its experimental one first asks a gRPC control API
# (which an emulator lacks) for the bucket type and waits a minute for the answer. Set before import.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import gcsfs
import numpy as np
import pytest
from gcp_storage_emulator.server import create_server
from helpers.digit_images import digit_pixels, write_image_folder, write_zip

from auditor.artifacts import ArtifactStore
from auditor.datasets.images import decode_sample
from auditor.datasets.refs import resolve_dataset
from auditor.datasets.uri import SchemeNotAllowedError

BUCKET = "audits"


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=BUCKET)
    server.start()
    host, port = server._api._httpd.server_address  # bound port (0 asked for any free one)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    gcsfs.GCSFileSystem.clear_instance_cache()
    fs = fsspec.filesystem("gs")
    yield fs
    for path in fs.ls(BUCKET):
        fs.rm(path, recursive=True)
    gcsfs.GCSFileSystem.clear_instance_cache()


def test_gs_folders_archives_and_files_read_like_local_ones(bucket: Any, tmp_path: Path) -> None:
    local = tmp_path / "digits"
    write_image_folder(local, digit_pixels(0, 10))
    for file in sorted(local.iterdir()):
        bucket.pipe(f"{BUCKET}/digits/{file.name}", file.read_bytes())
    bucket.pipe(f"{BUCKET}/digits.zip", write_zip(tmp_path / "digits.zip", local).read_bytes())
    np.save(tmp_path / "emb.npy", np.arange(12, dtype=np.float32).reshape(4, 3))
    bucket.pipe(f"{BUCKET}/emb.npy", (tmp_path / "emb.npy").read_bytes())

    with pytest.raises(SchemeNotAllowedError, match="'gs' is not enabled"):
        resolve_dataset(f"gs://{BUCKET}/digits", allowed_schemes={"s3"})
    folder = resolve_dataset(f"gs://{BUCKET}/digits", allowed_schemes={"gs"})
    same = resolve_dataset(str(local))
    assert (folder.scheme, folder.format, folder.n_samples) == ("gs", "image_folder", 10)
    assert folder.sample_keys() == same.sample_keys()
    assert folder.content_fingerprint == same.content_fingerprint
    decoded = decode_sample(folder.image_samples()[4])
    assert decoded.reason is None and decoded.image is not None

    archive = resolve_dataset(
        f"gs://{BUCKET}/digits.zip", allowed_schemes={"gs"}, download_dir=tmp_path / "dl"
    )
    assert (archive.format, archive.n_samples) == ("zip", 10)
    embeddings = resolve_dataset(
        f"gs://{BUCKET}/emb.npy", allowed_schemes={"gs"}, download_dir=tmp_path / "dl"
    )
    assert embeddings.local_path is not None and np.load(embeddings.local_path).shape == (4, 3)


def test_gs_artifact_store_round_trip_and_corruption(bucket: Any) -> None:
    store = ArtifactStore(f"gs://{BUCKET}/artifacts")
    array = np.random.default_rng(1).normal(size=(30, 4)).astype(np.float32)
    store.put_array("embeddings/y/def", array, {"side": "synthetic"})
    np.testing.assert_array_equal(store.get_array("embeddings/y/def"), array)
    assert store.get_meta("embeddings/y/def") == {"side": "synthetic"}
    bucket.pipe(f"{BUCKET}/artifacts/embeddings/y/def.npy", b"truncated")
    assert store.try_get_array("embeddings/y/def") is None
