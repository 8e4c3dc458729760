"""``s3://`` references and an ``s3://`` artifact store, through s3fs over HTTP to a local S3-compatible
server (moto's; no real bucket is reachable from here). The endpoint comes from ``AWS_ENDPOINT_URL``, as
it would for MinIO or R2 in a deployment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import s3fs
from helpers.object_stores import check_artifact_store, check_reads_like_local
from moto import server as moto_server

from auditor.artifacts import ArtifactStore
from auditor.pipeline.evaluate import MetricParams
from auditor.pipeline.run import AuditSpec, DatasetRef, run_audit

BUCKET = "audits"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[s3fs.S3FileSystem]:
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "auditor-test",
        "AWS_SECRET_ACCESS_KEY": "auditor-test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # instances remember the environment they were made in
    fs = s3fs.S3FileSystem()
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    yield fs
    fs.rm(BUCKET, recursive=True)
    s3fs.S3FileSystem.clear_instance_cache()


def test_s3_folders_archives_and_files_read_like_local_ones(
    bucket: s3fs.S3FileSystem, tmp_path: Path
) -> None:
    check_reads_like_local(bucket, "s3", BUCKET, tmp_path, other_scheme="http")


def test_s3_artifact_store_is_checked_on_read(bucket: s3fs.S3FileSystem) -> None:
    check_artifact_store(bucket, "s3", BUCKET)


def test_text_audit_from_s3_with_the_cache_in_s3(
    bucket: s3fs.S3FileSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDITOR_REMOTE_SCHEMES", "s3")
    subjects = ["The farmer", "A teacher", "The pilot", "My neighbour"]
    actions = ["planted tomatoes", "read a novel", "fixed the roof", "baked bread"]
    sentences = [f"{s} {a} on day {d}." for s in subjects for a in actions for d in range(3)]  # 48
    bucket.pipe(f"{BUCKET}/real.txt", "\n".join(sentences[::2]).encode())
    bucket.pipe(f"{BUCKET}/synthetic.txt", ("\n".join(sentences[1::2]) + "\n\n").encode())
    spec = AuditSpec(
        real=DatasetRef(uri=f"s3://{BUCKET}/real.txt"),
        synthetic=DatasetRef(uri=f"s3://{BUCKET}/synthetic.txt"),
        extractor="text-minilm",
        params=MetricParams(metrics=("fid", "precision", "recall"), bootstrap=0, spectral_bootstrap=0),
        device="cpu",
    )
    store = ArtifactStore(f"s3://{BUCKET}/artifacts")
    with pytest.warns(UserWarning):  # 24 texts of 384-d features: N < d, on purpose
        first = run_audit(spec, store=store).document
    assert (first["real"]["scheme"], first["real"]["n"], first["synthetic"]["n"]) == ("s3", 24, 24)
    assert first["synthetic"]["skipped"]["counts"] == {"empty_line": 1}
    assert not first["real"]["from_cache"]
    with pytest.warns(UserWarning):
        second = run_audit(spec, store=store).document
    assert second["real"]["from_cache"] and second["synthetic"]["from_cache"]
    assert second["metrics"]["fid"]["value"] == pytest.approx(first["metrics"]["fid"]["value"], rel=1e-6)
    assert bucket.glob(f"{BUCKET}/artifacts/embeddings/text-minilm/*.json")
