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
import pytest
from gcp_storage_emulator.server import create_server
from helpers.object_stores import check_artifact_store, check_reads_like_local

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
    check_reads_like_local(bucket, "gs", BUCKET, tmp_path, other_scheme="s3")


def test_gs_artifact_store_is_checked_on_read(bucket: Any) -> None:
    check_artifact_store(bucket, "gs", BUCKET)
