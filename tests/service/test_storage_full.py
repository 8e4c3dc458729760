"""A full artifact store fails the audit with ``storage_full`` and leaves nothing that is later trusted.

The disk is real: a 1 MiB tmpfs mounted for the test (we are root in the test environment; where
mounting is not permitted the tests skip, saying so), filled with a filler file until the writes of
interest hit ENOSPC part-way. What is checked:

* the store itself: ENOSPC in the middle of an array, or on its manifest after the array fitted, raises
  :class:`~auditor.errors.StorageFullError` naming the store, and leaves no entry, no orphaned array
  and no temporary file; once space is freed the same write succeeds;
* a real audit whose extractor writes its embedding cache (``text-minilm``), in process
  (``run_audit`` with a store, the library path) and through the service's task bodies on the
  embedded in-process dispatcher (``auditor serve`` without a broker): the audit fails with
  ``storage_full``, the message names the artifact store, and a second audit after freeing space
  embeds again (``from_cache`` false) instead of trusting a partial entry, a third reads the cache;
* the CLI: ``auditor audit`` with its home (the SQLite database) on the full disk prints
  ``error [storage_full]`` and exits 3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.audits import record_queued_audit

from auditor.artifacts import ArtifactStore
from auditor.config import Settings
from auditor.db import queries
from auditor.errors import StorageFullError
from auditor.metrics.warnings import SampleSizeWarning
from auditor.pipeline.evaluate import MetricParams
from auditor.pipeline.run import AuditSpec, DatasetRef, run_audit
from auditor.service.context import ServiceContext
from auditor.service.dispatch import InProcessDispatcher

PAGE = 4096
AUDITOR_BIN = Path(sys.executable).parent / "auditor"


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs, unmounted afterwards."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the storage-full tests use a real, small filesystem)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` with one file until ``leave`` bytes (rounded down to pages) are left; returns it."""
    filler = disk / "filler"
    with filler.open("ab") as handle:
        handle.write(b"\0" * max(0, free_bytes(disk) - leave // PAGE * PAGE))
    assert free_bytes(disk) == leave // PAGE * PAGE
    return filler


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- the store --------------------------------------------------------------------------------------------


def test_enospc_mid_array_leaves_no_entry_and_no_temporary_file(tiny_disk: Path) -> None:
    store = ArtifactStore(str(tiny_disk / "artifacts"))
    array = np.arange(300 * 64, dtype=np.float32).reshape(300, 64)  # 76,928 bytes as .npy
    filler = fill(tiny_disk, leave=8 * PAGE)  # the write gets 32 KiB in, then ENOSPC

    with pytest.raises(StorageFullError) as raised:
        store.put_array("embeddings/x/key", array)
    error = raised.value
    assert (error.code, error.http_status, error.exit_code) == ("storage_full", 503, 3)
    assert f"the artifact store {tiny_disk / 'artifacts'} is full" in error.message
    assert error.details["store"] == "artifacts" and error.details["object"] == "embeddings/x/key.npy"
    assert files_under(tiny_disk / "artifacts") == []  # no array, no manifest, no .tmp
    assert not store.has_array("embeddings/x/key") and store.try_get_entry("embeddings/x/key") is None
    assert free_bytes(tiny_disk) == 8 * PAGE  # the partial temporary file's pages were given back

    filler.unlink()
    store.put_array("embeddings/x/key", array)
    np.testing.assert_array_equal(store.get_array("embeddings/x/key"), array)


def test_enospc_on_the_manifest_removes_the_array_it_would_have_described(tiny_disk: Path) -> None:
    store = ArtifactStore(str(tiny_disk / "artifacts"))
    (tiny_disk / "artifacts" / "embeddings").mkdir()
    array = np.ones((100, 20), dtype=np.float32)  # 8,128 bytes: two pages
    filler = fill(tiny_disk, leave=2 * PAGE)  # room for the array, none for its manifest

    with pytest.raises(StorageFullError, match=r"is full: .* writing embeddings/key\.json"):
        store.put_array("embeddings/key", array)
    assert files_under(tiny_disk / "artifacts") == []  # the orphaned .npy went with the failure
    assert free_bytes(tiny_disk) == 2 * PAGE

    filler.unlink()
    store.put_array("embeddings/key", array)
    assert files_under(tiny_disk / "artifacts") == ["embeddings/key.json", "embeddings/key.npy"]


def test_an_array_without_its_manifest_is_not_an_entry(tmp_path: Path) -> None:
    """What a writer SIGKILLed between the two renames leaves: ignored, and overwritten by the next."""
    store = ArtifactStore(str(tmp_path))
    np.save(tmp_path / "k.npy", np.zeros((3, 2), dtype=np.float32))
    assert not store.has_array("k") and store.try_get_entry("k") is None
    store.put_array("k", np.ones((3, 2), dtype=np.float32))
    np.testing.assert_array_equal(store.get_array("k"), np.ones((3, 2), dtype=np.float32))


def test_a_truncated_array_is_not_trusted_and_is_rewritten(tmp_path: Path) -> None:
    """Bytes that do not hash to the manifest's SHA-256 (a disk that lied, a copy cut short) are a miss."""
    store = ArtifactStore(str(tmp_path))
    array = np.arange(60, dtype=np.float32).reshape(20, 3)
    store.put_array("k", array)
    data = (tmp_path / "k.npy").read_bytes()
    (tmp_path / "k.npy").write_bytes(data[: len(data) // 2])
    assert store.has_array("k") and store.try_get_entry("k") is None
    store.put_array("k", array)
    np.testing.assert_array_equal(store.get_array("k"), array)


# --- a real audit writing its embedding cache -------------------------------------------------------------


def corpus(directory: Path) -> tuple[Path, Path]:
    subjects = ["The farmer", "A teacher", "The pilot", "My neighbour", "The chef"]
    actions = ["planted tomatoes", "read a novel", "fixed the roof", "painted the fence", "baked bread"]
    places = ["in the morning.", "near the river.", "after lunch.", "in the old town."]
    sentences = [f"{s} {a} {p}" for s in subjects for a in actions for p in places]  # 100
    real, synthetic = directory / "real.txt", directory / "synthetic.txt"
    real.write_text("\n".join(sentences[::2]) + "\n", encoding="utf-8")
    synthetic.write_text("\n".join(s.replace("The", "A") for s in sentences[1::2]) + "\n", encoding="utf-8")
    return real, synthetic  # 50 texts each: 50 x 384 float32 = 76,928 bytes per cached side


def text_spec(real: Path, synthetic: Path) -> AuditSpec:
    return AuditSpec(
        real=DatasetRef(uri=str(real)),
        synthetic=DatasetRef(uri=str(synthetic)),
        extractor="text-minilm",
        params=MetricParams(metrics=("fid", "precision", "recall"), bootstrap=0, spectral_bootstrap=0),
        device="cpu",
    )


def test_in_process_audit_with_a_full_cache_fails_then_recomputes(tiny_disk: Path, tmp_path: Path) -> None:
    real, synthetic = corpus(tmp_path)
    root = tiny_disk / "artifacts"
    store = ArtifactStore(str(root))
    filler = fill(tiny_disk, leave=5 * PAGE)  # less than one side's embeddings

    with pytest.raises(StorageFullError) as raised:  # while caching the first side, before scoring
        run_audit(text_spec(real, synthetic), store=store)
    assert f"the artifact store {root} is full" in raised.value.message
    assert files_under(root) == []

    filler.unlink()
    with pytest.warns(SampleSizeWarning):
        first = run_audit(text_spec(real, synthetic), store=store).document
    assert not first["real"]["from_cache"] and not first["synthetic"]["from_cache"]
    assert sorted(p.rsplit(".", 1)[1] for p in files_under(root)) == ["json", "json", "npy", "npy"]
    with pytest.warns(SampleSizeWarning):
        again = run_audit(text_spec(real, synthetic), store=store).document
    assert again["real"]["from_cache"] and again["synthetic"]["from_cache"]
    assert again["metrics"]["fid"]["value"] == pytest.approx(first["metrics"]["fid"]["value"], rel=1e-9)


def queue_audit(context: ServiceContext, spec: AuditSpec) -> str:
    audit_id = record_queued_audit(context, spec)
    assert context.dispatcher is not None
    context.dispatcher.enqueue_start(audit_id)
    return audit_id


def wait_final(context: ServiceContext, audit_id: str, timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with context.session() as session:
            audit = queries.get_audit(session, audit_id)
            if audit.state in ("succeeded", "failed", "cancelled"):
                return {
                    "state": audit.state,
                    "code": audit.error_code,
                    "message": audit.error_message,
                    "result": audit.result,
                }
        time.sleep(0.1)
    raise AssertionError(f"audit {audit_id} not final after {timeout:.0f} s")


@pytest.mark.filterwarnings("ignore::auditor.metrics.warnings.SampleSizeWarning")  # 50 texts, d = 384
def test_service_audit_on_a_full_artifact_store_fails_with_storage_full(
    tiny_disk: Path, tmp_path: Path
) -> None:
    """The service's task bodies (start -> embed -> score) on the embedded in-process dispatcher."""
    from auditor.db.migrate import upgrade_database

    database_url = f"sqlite:///{tmp_path / 'auditor.db'}"  # the database is not on the full disk
    upgrade_database(database_url)
    root = tiny_disk / "artifacts"
    settings = Settings(database_url=database_url, home=tmp_path / "home", artifact_root=str(root))
    context = ServiceContext.from_settings(settings, migrate=False)
    dispatcher = InProcessDispatcher(context)
    context.dispatcher = dispatcher
    real, synthetic = corpus(tmp_path)
    try:
        filler = fill(tiny_disk, leave=5 * PAGE)
        failed = wait_final(context, queue_audit(context, text_spec(real, synthetic)))
        assert failed["state"] == "failed" and failed["code"] == "storage_full", failed
        message = str(failed["message"])
        assert message.startswith("embed:") and f"the artifact store {root} is full" in message, message
        assert files_under(root) == []

        filler.unlink()
        done = wait_final(context, queue_audit(context, text_spec(real, synthetic)))
        assert done["state"] == "succeeded", done
        document = done["result"]
        assert isinstance(document, dict)
        assert not document["real"]["from_cache"] and not document["synthetic"]["from_cache"]
    finally:
        dispatcher.close()
        context.engine.dispose()


# --- the CLI ----------------------------------------------------------------------------------------------


def test_cli_audit_with_its_home_on_a_full_disk_exits_3_with_storage_full(
    tiny_disk: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    for name in ("real", "synthetic"):
        np.save(tmp_path / f"{name}.npy", rng.normal(size=(200, 8)).astype(np.float32))
    fill(tiny_disk)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env.update(AUDITOR_HOME=str(tiny_disk / "home"), COLUMNS="200")
    done = subprocess.run(
        [
            *(str(AUDITOR_BIN), "audit", "--metrics", "fid", "--bootstrap", "0"),
            *("--real", str(tmp_path / "real.npy"), "--synthetic", str(tmp_path / "synthetic.npy")),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, (done.stdout, done.stderr)
    stderr = " ".join(done.stderr.split())
    assert stderr.startswith("error [storage_full]: the SQLite database is full"), stderr
    assert "Traceback" not in done.stderr and "internal error" not in stderr
