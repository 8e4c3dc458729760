"""Resolving references of every format, locally, over HTTP and from fsspec's memory filesystem."""

from __future__ import annotations

import functools
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader

from auditor.datasets.images import decode_sample
from auditor.datasets.netguard import HostPolicy
from auditor.datasets.options import DatasetLimits, DatasetOptionError
from auditor.datasets.refs import (
    WrongModalityError,
    detect_format,
    require_modality,
    resolve_dataset,
    resolve_local_path,
)
from auditor.datasets.uri import SchemeNotAllowedError
from auditor.errors import DatasetFormatError, DatasetNotFoundError, TooFewSamplesError

N = 30
# The test server listens on loopback, which a deployment refuses unless its operator allows it.
LOOPBACK_ALLOWED = DatasetLimits(remote_hosts=HostPolicy.parse(["127.0.0.1"]))


def digits_png(n: int = N) -> list[tuple[str, int, bytes]]:
    """(``<label>/<index>.png``, label, PNG bytes) for the first ``n`` sklearn digits, 32x32 grey."""
    digits = load_digits()
    rows = []
    for index in range(n):
        pixels = (digits.images[index] * 15).astype(np.uint8).repeat(4, axis=0).repeat(4, axis=1)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        rows.append((f"{digits.target[index]}/{index:03d}.png", int(digits.target[index]), buffer.getvalue()))
    return rows


def write_folder(root: Path, n: int = N) -> Path:
    for key, _, data in digits_png(n):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    return root


def add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_tar(path: Path, n: int = N, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as archive:  # type: ignore[call-overload]
        for key, _, data in digits_png(n):
            add_bytes(archive, key, data)
    return path


def write_zip(path: Path, n: int = N) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("digits/", b"")  # a directory entry: ignored
        for key, _, data in digits_png(n):
            archive.writestr(key, data)
        archive.writestr("__MACOSX/0/._000.png", b"finder debris")
    return path


def write_shards(directory: Path, n_shards: int = 3, per_shard: int = 10) -> list[Path]:
    """WebDataset shards: ``<key>.png`` + ``<key>.cls`` per sample, plus a metadata-only sample."""
    rows = digits_png(n_shards * per_shard)
    paths = []
    directory.mkdir(parents=True, exist_ok=True)
    for shard in range(n_shards):
        path = directory / f"shard-{shard:03d}.tar"
        with tarfile.open(path, "w") as archive:
            for index in range(shard * per_shard, (shard + 1) * per_shard):
                _, label, data = rows[index]
                add_bytes(archive, f"sample{index:04d}.png", data)
                add_bytes(archive, f"sample{index:04d}.cls", f"{label}\n".encode())
            add_bytes(archive, f"meta{shard}.json", b"{}")
        paths.append(path)
    return paths


# -- local formats ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "write", "fmt"),
    [
        ("d.zip", write_zip, "zip"),
        ("d.tar", write_tar, "tar"),
        ("d.tar.gz", functools.partial(write_tar, mode="w:gz"), "tar"),
        ("d.tgz", functools.partial(write_tar, mode="w:gz"), "tar"),
    ],
)
def test_archives_read_like_the_folder_they_hold(tmp_path: Path, name: str, write: Any, fmt: str) -> None:
    folder = resolve_dataset(str(write_folder(tmp_path / "folder")), options={"labels": "folder"})
    archive = resolve_dataset(str(write(tmp_path / name)), options={"labels": "folder"})
    assert (archive.format, archive.modality) == (fmt, "image")
    assert archive.sample_keys() == folder.sample_keys()
    assert archive.labels() == folder.labels() == [str(label) for _, label, _ in sorted(digits_png())]
    assert archive.content_fingerprint == folder.content_fingerprint
    for mine, theirs in zip(archive.image_samples()[::7], folder.image_samples()[::7], strict=True):
        assert mine.read_bytes() == theirs.read_bytes()
    archive.close()


def test_webdataset_shards_by_brace_pattern_with_cls_labels(tmp_path: Path) -> None:
    write_shards(tmp_path / "wds")
    resolved = resolve_dataset(str(tmp_path / "wds" / "shard-{000..002}.tar"))
    assert (resolved.format, resolved.n_total, resolved.has_labels) == ("webdataset", 30, True)
    assert resolved.sample_keys() == [f"sample{i:04d}" for i in range(30)]
    assert resolved.labels() == [str(label) for _, label, _ in digits_png(30)]
    assert resolved.ignored_files == 3, "the metadata-only samples are not images"
    decoded = decode_sample(resolved.image_samples()[25])
    assert decoded.image is not None and decoded.image.shape == (32, 32, 3)
    # The samples of a shard, decoded in worker processes.
    loader = DataLoader(resolved.image_samples(), batch_size=None, num_workers=2, collate_fn=decode_sample)
    assert sum(1 for item in loader if item.reason is None) == 30
    with pytest.raises(DatasetNotFoundError, match="shard-003"):
        resolve_dataset(str(tmp_path / "wds" / "shard-{000..003}.tar"))


def test_a_single_tar_with_cls_entries_is_a_webdataset_unless_told_otherwise(tmp_path: Path) -> None:
    shard = write_shards(tmp_path, n_shards=1)[0]
    assert resolve_dataset(str(shard)).format == "webdataset"
    plain = resolve_dataset(str(shard), format="tar")
    assert plain.format == "tar" and plain.sample_keys()[0] == "sample0000.png"
    assert resolve_dataset(str(shard), format="webdataset").sample_keys()[0] == "sample0000"


def test_single_file_formats_and_their_modalities(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", np.ones((6, 4), dtype=np.float32))
    table = pd.DataFrame({"age": [30, 41, 52, 63], "kind": ["a", "b", None, "a"]})
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet")
    pd.DataFrame({"emb": [[0.1, 0.2]] * 3, "cls": [1, 2, 3]}).to_parquet(tmp_path / "e.parquet")
    got = {
        name: (r.format, r.modality, r.n_total)
        for name in ("e.npy", "t.csv", "t.parquet", "e.parquet")
        for r in [resolve_dataset(str(tmp_path / name))]
    }
    assert got == {
        "e.npy": ("npy", "embeddings", 6),
        "t.csv": ("csv", "table", None),
        "t.parquet": ("parquet", "table", 4),
        "e.parquet": ("parquet", "embeddings", 3),
    }
    labelled = resolve_dataset(str(tmp_path / "t.csv"), options={"label_field": "kind", "max_samples": 3})
    rows = labelled.selected_rows(4)
    assert len(rows) == 3 and labelled.labels() == [["a", "b", None, "a"][i] for i in rows]
    assert labelled.local_path == tmp_path / "t.csv"
    with pytest.raises(DatasetFormatError, match="label column 'nope'"):
        resolve_dataset(str(tmp_path / "t.parquet"), options={"label_field": "nope"})


def test_explicit_format_and_modality_are_checked(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_text("hello\nworld\n")
    with pytest.raises(DatasetFormatError, match="cannot tell the format"):
        resolve_dataset(str(tmp_path / "data.bin"))
    assert resolve_dataset(str(tmp_path / "data.bin"), format="txt").texts() == ["hello", "world"]
    with pytest.raises(DatasetFormatError, match="unknown format 'gif'"):
        resolve_dataset(str(tmp_path / "data.bin"), format="gif")
    with pytest.raises(WrongModalityError, match="format txt holds text data, not image"):
        resolve_dataset(str(tmp_path / "data.bin"), format="txt", options={"modality": "image"})
    with pytest.raises(DatasetOptionError, match="invalid dataset options: max_samples"):
        resolve_dataset(str(tmp_path / "data.bin"), format="txt", options={"max_samples": 0})
    folder = resolve_dataset(str(write_folder(tmp_path / "imgs", n=3)))
    with pytest.raises(WrongModalityError, match="extractor 'minilm' reads text data"):
        require_modality(folder, {"text"}, "minilm")
    assert detect_format(tmp_path / "imgs") == "image_folder"
    assert detect_format(tmp_path / "x.TAR.GZ") == "tar"


def test_empty_folders_fail_early_and_say_what_was_ignored(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TooFewSamplesError, match="no images found"):
        resolve_dataset(str(tmp_path / "empty"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.md").write_text("# not images")
    (tmp_path / "docs" / ".DS_Store").write_bytes(b"\0")
    with pytest.raises(TooFewSamplesError, match="2 other files ignored"):
        resolve_dataset(str(tmp_path / "docs"))
    with pytest.raises(DatasetNotFoundError):
        resolve_dataset(str(tmp_path / "missing"))


def test_resolve_local_path_keeps_its_single_file_behaviour(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(3))
    assert resolve_local_path(f"file://{tmp_path / 'a.npy'}") == tmp_path / "a.npy"
    with pytest.raises(DatasetFormatError, match="is a directory"):
        resolve_local_path(str(tmp_path))
    with pytest.raises(DatasetFormatError, match="unsupported scheme 's3'"):
        resolve_local_path("s3://bucket/a.npy")


# -- remote references --------------------------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on localhost serving ``tmp_path / "www"``: (base URL, directory)."""
    www = tmp_path / "www"
    www.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", www
    server.shutdown()
    server.server_close()


def test_http_archives_and_files_are_fetched_when_http_is_enabled(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    base, www = served
    write_zip(www / "digits.zip")
    np.save(www / "emb.npy", np.arange(12, dtype=np.float32).reshape(4, 3))
    with pytest.raises(SchemeNotAllowedError, match="'http' is not enabled"):
        resolve_dataset(f"{base}/digits.zip", allowed_schemes={"https"})
    downloads = tmp_path / "downloads"
    remote = resolve_dataset(
        f"{base}/digits.zip", allowed_schemes={"http"}, limits=LOOPBACK_ALLOWED, download_dir=downloads
    )
    local = resolve_dataset(str(www / "digits.zip"))
    assert (remote.scheme, remote.format, remote.n_samples) == ("http", "zip", N)
    assert remote.content_fingerprint == local.content_fingerprint
    assert remote.local_path is None and downloads.exists()
    embeddings = resolve_dataset(
        f"{base}/emb.npy", allowed_schemes={"http"}, limits=LOOPBACK_ALLOWED, download_dir=downloads
    )
    assert embeddings.local_path is not None and downloads in embeddings.local_path.parents
    assert np.load(embeddings.local_path).shape == (4, 3)
    with pytest.raises(DatasetNotFoundError):
        resolve_dataset(
            f"{base}/nope.npy", allowed_schemes={"http"}, limits=LOOPBACK_ALLOWED, download_dir=downloads
        )


def test_http_webdataset_shards(served: tuple[str, Path], tmp_path: Path) -> None:
    base, www = served
    write_shards(www / "wds", n_shards=2)
    resolved = resolve_dataset(
        f"{base}/wds/shard-{{000..001}}.tar",
        allowed_schemes={"http"},
        limits=LOOPBACK_ALLOWED,
        download_dir=tmp_path / "dl",
    )
    assert (resolved.format, resolved.n_samples, resolved.has_labels) == ("webdataset", 20, True)
    assert decode_sample(resolved.image_samples()[13]).reason is None


def test_http_image_folder_from_a_directory_listing(served: tuple[str, Path]) -> None:
    base, www = served
    write_folder(www / "imgs", n=6)
    resolved = resolve_dataset(
        f"{base}/imgs/", allowed_schemes={"http"}, limits=LOOPBACK_ALLOWED, options={"labels": "folder"}
    )
    local = resolve_dataset(str(www / "imgs"), options={"labels": "folder"})
    assert resolved.sample_keys() == local.sample_keys()
    assert resolved.labels() == local.labels()
    assert resolved.content_fingerprint == local.content_fingerprint
    decoded = decode_sample(resolved.image_samples()[0])
    assert decoded.image is not None and decoded.image.shape == (32, 32, 3)


@pytest.fixture
def memory_root(tmp_path: Path) -> Iterator[str]:
    """A fresh prefix in fsspec's process-wide memory filesystem, removed afterwards."""
    fs = fsspec.filesystem("memory")
    root = f"memory://{tmp_path.name}"
    yield root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_memory_folder_text_and_archive(memory_root: str, tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    for key, _, data in digits_png(12):
        fs.pipe(f"{memory_root}/imgs/{key}", data)
    fs.pipe(f"{memory_root}/corpus.txt", b"first line\n\nsecond line\n")
    fs.pipe(f"{memory_root}/d.zip", write_zip(tmp_path / "d.zip", n=5).read_bytes())
    options = {"labels": "folder", "max_samples": 5, "seed": 2}
    folder = resolve_dataset(f"{memory_root}/imgs", allowed_schemes={"memory"}, options=options)
    assert (folder.scheme, folder.format, folder.n_total, folder.n_samples) == (
        "memory",
        "image_folder",
        12,
        5,
    )
    local_copy = resolve_dataset(str(write_folder(tmp_path / "local", n=12)), options=options)
    assert folder.sample_keys() == local_copy.sample_keys(), "the subsample does not depend on the storage"
    assert folder.content_fingerprint == local_copy.content_fingerprint
    assert folder.labels() == local_copy.labels()
    assert all(decode_sample(s).reason is None for s in folder.image_samples())
    text = resolve_dataset(
        f"{memory_root}/corpus.txt",
        allowed_schemes={"memory"},
        download_dir=tmp_path / "dl",
        options={"max_bad_fraction": 0.5},
    )
    assert text.texts() == ["first line", "second line"] and text.skipped.counts == {"empty_line": 1}
    archive = resolve_dataset(
        f"{memory_root}/d.zip", allowed_schemes={"memory"}, download_dir=tmp_path / "dl"
    )
    assert archive.n_samples == 5
    with pytest.raises(DatasetNotFoundError):
        resolve_dataset(f"{memory_root}/missing", allowed_schemes={"memory"})
