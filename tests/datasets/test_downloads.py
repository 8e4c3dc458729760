"""Remote files are downloaded within ``max_download_bytes``, and no download outlives its audit.

A real HTTP server on loopback (allowed explicitly, as an operator would for an internal store) serves
files with and without a Content-Length; the audits run through ``run_audit`` and the service's
``start`` stage with the settings a deployment would use.
"""

from __future__ import annotations

import gc
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.audits import record_queued_audit
from helpers.http_servers import HttpServer, Reply

from auditor.config import Settings
from auditor.datasets.netguard import HostPolicy
from auditor.datasets.options import DatasetLimits
from auditor.datasets.refs import dataset_scope, resolve_dataset
from auditor.datasets.sources import (
    DEFAULT_MAX_ARCHIVE_BYTES,
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_MAX_MEMBER_BYTES,
)
from auditor.db import queries
from auditor.errors import DatasetFormatError, DownloadTooLargeError
from auditor.pipeline.run import run_audit
from auditor.pipeline.spec import AuditSpec
from auditor.service import execution
from auditor.service.context import ServiceContext

MiB = 1 << 20
FAST = {"metrics": ["fid"], "bootstrap": 0, "spectral_bootstrap": 0}


def npy_bytes(rows: int, seed: int, dim: int = 4) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32))
    return buffer.getvalue()


def files_under(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file()] if directory.exists() else []


def limits(max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES) -> DatasetLimits:
    return DatasetLimits(max_download_bytes=max_download_bytes, remote_hosts=HostPolicy.parse(["127.0.0.1"]))


@pytest.fixture
def server() -> Iterator[HttpServer]:
    routes = {
        "/real.npy": Reply(body=npy_bytes(200, seed=0)),
        "/synthetic.npy": Reply(body=npy_bytes(200, seed=1)),
        "/endless.npy": Reply(stream=64 * MiB),  # no Content-Length
        "/declared.npy": Reply(stream=512 * MiB, declared_length=512 * MiB),
        "/broken.zip": Reply(body=b"PK\x03\x04 not really a zip"),
    }
    with HttpServer(routes) as running:
        yield running


def test_the_defaults_are_the_settings_defaults() -> None:
    settings = Settings()
    assert settings.max_download_bytes == DEFAULT_MAX_DOWNLOAD_BYTES == 10 << 30
    assert settings.max_archive_bytes == DEFAULT_MAX_ARCHIVE_BYTES == 16 << 30
    assert settings.max_member_bytes == DEFAULT_MAX_MEMBER_BYTES == 64 << 20
    assert settings.max_samples is None and settings.remote_allow_hosts == ""
    assert DatasetLimits.from_settings(settings) == DatasetLimits()


def test_a_stream_without_length_is_cut_at_the_cap_and_nothing_is_left(
    server: HttpServer, tmp_path: Path
) -> None:
    downloads = tmp_path / "dl"
    with pytest.raises(DownloadTooLargeError, match=r"larger than max_download_bytes=1048576") as caught:
        resolve_dataset(
            f"{server.url}/endless.npy", allowed_schemes={"http"}, download_dir=downloads, limits=limits(MiB)
        )
    assert (caught.value.code, caught.value.http_status, caught.value.exit_code) == (
        "download_too_large",
        413,
        2,
    )
    assert server.paths() == ["/endless.npy"], "one GET, streamed: there is no size to refuse up front"
    assert files_under(downloads) == [], "no partial file left behind"
    assert server.body_bytes_sent < 32 * MiB, "the client stopped reading soon after the cap"


def test_a_declared_length_over_the_cap_is_refused_before_the_body(
    server: HttpServer, tmp_path: Path
) -> None:
    downloads = tmp_path / "dl"
    with pytest.raises(DownloadTooLargeError, match=r"536870912 bytes"):
        resolve_dataset(
            f"{server.url}/declared.npy", allowed_schemes={"http"}, download_dir=downloads, limits=limits(MiB)
        )
    assert server.paths() == ["/declared.npy"]
    # Refused on the headers: of the 512 MiB announced, only what the sockets buffered was ever sent.
    assert server.body_bytes_sent < 32 * MiB
    assert files_under(downloads) == []


def test_a_file_within_the_cap_is_read_and_its_download_deleted_on_close(
    server: HttpServer, tmp_path: Path
) -> None:
    downloads = tmp_path / "dl"
    resolved = resolve_dataset(
        f"{server.url}/real.npy", allowed_schemes={"http"}, download_dir=downloads, limits=limits(MiB)
    )
    assert resolved.local_path is not None and np.load(resolved.local_path).shape == (200, 4)
    assert files_under(downloads) == [resolved.local_path]
    resolved.close()
    assert files_under(downloads) == []


def test_downloads_are_private_to_a_resolution_and_go_with_it(server: HttpServer, tmp_path: Path) -> None:
    downloads = tmp_path / "dl"
    url = f"{server.url}/real.npy"
    first = resolve_dataset(url, allowed_schemes={"http"}, download_dir=downloads, limits=limits())
    second = resolve_dataset(url, allowed_schemes={"http"}, download_dir=downloads, limits=limits())
    assert first.local_path != second.local_path, "two audits of one URL never share (or race on) a file"
    assert first.content_fingerprint == second.content_fingerprint
    del first
    gc.collect()
    assert files_under(downloads) == [second.local_path], "a dataset dropped without close() cleans up too"


def test_a_failed_resolution_deletes_what_it_downloaded(server: HttpServer, tmp_path: Path) -> None:
    downloads = tmp_path / "dl"
    with pytest.raises(DatasetFormatError, match="not a readable zip"):
        resolve_dataset(
            f"{server.url}/broken.zip", allowed_schemes={"http"}, download_dir=downloads, limits=limits()
        )
    assert server.paths("GET") == ["/broken.zip"] and files_under(downloads) == []


def test_dataset_scope_closes_what_was_resolved_inside_it(server: HttpServer, tmp_path: Path) -> None:
    downloads = tmp_path / "dl"
    with dataset_scope():
        resolved = resolve_dataset(
            f"{server.url}/real.npy", allowed_schemes={"http"}, download_dir=downloads, limits=limits()
        )
        assert resolved.local_path is not None and resolved.local_path.is_file()
    assert files_under(downloads) == []


def _env(monkeypatch: pytest.MonkeyPatch, home: Path, **extra: str) -> None:
    monkeypatch.setenv("AUDITOR_HOME", str(home))
    monkeypatch.setenv("AUDITOR_REMOTE_SCHEMES", "http")
    monkeypatch.setenv("AUDITOR_REMOTE_ALLOW_HOSTS", "127.0.0.1")
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def test_run_audit_leaves_no_download_behind_whether_it_succeeds_or_fails(
    server: HttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    _env(monkeypatch, home, AUDITOR_MAX_DOWNLOAD_BYTES=str(MiB))
    spec = AuditSpec(
        project="p",
        real={"uri": f"{server.url}/real.npy"},
        synthetic={"uri": f"{server.url}/synthetic.npy"},
        params=FAST,
    )
    result = run_audit(spec)
    assert result.document["real"]["n"] == 200
    assert files_under(home / "downloads") == []
    endless = spec.model_copy(
        update={"synthetic": spec.synthetic.model_copy(update={"uri": f"{server.url}/endless.npy"})}
    )
    with pytest.raises(DownloadTooLargeError):
        run_audit(endless)
    assert files_under(home / "downloads") == [], "the real side, downloaded first, is deleted too"


@pytest.fixture
def context(migrated_database_url: str, tmp_path: Path) -> Iterator[ServiceContext]:
    settings = Settings(
        database_url=migrated_database_url,
        home=tmp_path / "home",
        remote_schemes="http",
        remote_allow_hosts="127.0.0.1",
        max_download_bytes=MiB,
    )
    context = ServiceContext.from_settings(settings, migrate=False)
    yield context
    context.engine.dispose()


def _queued(context: ServiceContext, real: str, synthetic: str) -> str:
    spec = AuditSpec.model_validate(
        {"project": "p", "real": {"uri": real}, "synthetic": {"uri": synthetic}, "params": FAST}
    )
    audit_id = record_queued_audit(context, spec)
    return audit_id


def test_a_service_stage_deletes_its_downloads_when_it_ends(
    context: ServiceContext, server: HttpServer
) -> None:
    downloads = context.settings.home / "downloads"
    done = _queued(context, f"{server.url}/real.npy", f"{server.url}/synthetic.npy")
    failing = _queued(context, f"{server.url}/real.npy", f"{server.url}/endless.npy")
    execution.start_audit(context, done)
    execution.start_audit(context, failing)
    with context.session() as session:
        assert queries.get_audit(session, done).state == "succeeded"
        audit = queries.get_audit(session, failing)
        assert (audit.state, audit.error_code) == ("failed", "download_too_large"), audit.error_message
    assert files_under(downloads) == []


def test_a_remote_zip_counts_against_the_download_cap(tmp_path: Path) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("a.png", bytes(2 * MiB))
    with (
        HttpServer({"/d.zip": Reply(body=archive.getvalue())}) as running,
        pytest.raises(DownloadTooLargeError),
    ):
        resolve_dataset(
            f"{running.url}/d.zip",
            allowed_schemes={"http"},
            download_dir=tmp_path / "dl",
            limits=limits(MiB),
        )
    assert files_under(tmp_path / "dl") == []
