"""``GET /v1/audits/{id}/samples``: the per-sample evidence over real HTTP, on SQLite and PostgreSQL.

Pages are walked to the end and compared with the whole filtered table; the parquet download is read
back; the same key rules as the audit apply; every refusal carries its own code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers.audits import record_queued_audit

from auditor.client import ApiError, AuditorClient
from auditor.pipeline.spec import AuditSpec, DatasetRef

N_REAL, N_SYNTHETIC, N_COPIES = 240, 200, 30
KNN = ["precision", "coverage", "memorization_rate", "duplicate_rate", "tail_recall", "mode_jsd"]


def write_copies(directory: Path) -> dict[str, str]:
    """Real Gaussians; a synthetic set whose first rows are copies of real rows, some of them twice."""
    rng = np.random.default_rng(3)
    real = rng.normal(size=(N_REAL, 6)).astype(np.float32)
    synthetic = rng.normal(size=(N_SYNTHETIC, 6)).astype(np.float32)
    synthetic[:N_COPIES] = real[np.arange(N_COPIES) % 20]  # 10 real rows copied twice: duplicates too
    holdout = rng.normal(size=(150, 6)).astype(np.float32)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, array in (("real", real), ("synthetic", synthetic), ("holdout", holdout)):
        paths[name] = str(directory / f"{name}.npy")
        np.save(paths[name], array)
    return paths


def audit_body(paths: dict[str, str], *, metrics: list[str] = KNN, **extra: Any) -> dict[str, Any]:
    return {
        "real": {"uri": paths["real"]},
        "synthetic": {"uri": paths["synthetic"]},
        "holdout": {"uri": paths["holdout"]},
        "params": {"metrics": metrics, "bootstrap": 0, "spectral_bootstrap": 0},
        **extra,
    }


def run(client: AuditorClient, body: dict[str, Any]) -> dict[str, Any]:
    done = client.wait(client.submit(body)["id"], timeout=120, poll_s=0.2)
    assert done["state"] == "succeeded", done
    return done


def walk(client: AuditorClient, audit_id: str, **query: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.samples(audit_id, cursor=cursor, **query)
        assert page["total"] >= len(page["items"])
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def refusal(client: AuditorClient, audit_id: str, **query: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        client.samples(audit_id, **query)
    return caught.value


def test_pages_walk_the_whole_filtered_set_once_and_explain_the_metrics(service) -> None:  # type: ignore[no-untyped-def]
    paths = write_copies(service.home / "copies")
    with service.client() as client:
        done = run(client, audit_body(paths))
        audit_id, metrics = done["id"], done["result"]["metrics"]
        memorized = walk(client, audit_id, flag="memorized", limit=7)
        everything = walk(client, audit_id, limit=1000)
        real = walk(client, audit_id, side="real", limit=50)
        holdout = walk(client, audit_id, side="holdout", flag="memorized")
        by_distance = walk(client, audit_id, order="-nearest_real_distance", limit=13)
        uncovered = client.samples(audit_id, side="real", flag="uncovered", limit=1)
    assert done["result"]["diagnostics"]["rows"] == {"synthetic": N_SYNTHETIC, "real": N_REAL, "holdout": 150}

    indices = [row["index"] for row in memorized]
    assert indices == sorted(set(indices)), "default order is by index, each row once"
    assert set(range(N_COPIES)) <= set(indices)
    assert len(indices) == round(metrics["memorization_rate"]["value"] * N_SYNTHETIC)
    assert all(row["memorized"] and row["nearest_real_distance"] == 0.0 for row in memorized[:N_COPIES])
    assert [row["nearest_real_key"] for row in memorized[:N_COPIES]] == [str(i % 20) for i in range(N_COPIES)]

    assert [row["index"] for row in everything] == list(range(N_SYNTHETIC))
    assert sum(row["in_real_support"] for row in everything) / N_SYNTHETIC == metrics["precision"]["value"]
    assert sum(row["duplicate"] for row in everything) / N_SYNTHETIC == metrics["duplicate_rate"]["value"]
    assert all("covered" not in row and row["key"] == str(row["index"]) for row in everything)
    assert sum(row["covered"] for row in real) / N_REAL == metrics["coverage"]["value"]
    tail = [row for row in real if row["tail"]]
    assert sum(row["in_synthetic_manifold"] for row in tail) / len(tail) == metrics["tail_recall"]["value"]
    assert len(holdout) / 150 == metrics["memorization_rate"]["baseline"]
    assert uncovered["total"] == N_REAL - sum(row["covered"] for row in real)

    distances = [row["nearest_real_distance"] for row in by_distance]
    assert len(by_distance) == N_SYNTHETIC and distances == sorted(distances, reverse=True)
    assert sorted(row["index"] for row in by_distance) == list(range(N_SYNTHETIC))


def test_parquet_download_is_the_whole_filtered_table(service) -> None:  # type: ignore[no-untyped-def]
    paths = write_copies(service.home / "copies")
    with service.client() as client:
        audit_id = run(client, audit_body(paths))["id"]
        rows = walk(client, audit_id, flag="duplicate", order="nearest_synthetic_distance", limit=5)
        content = client.samples_parquet(audit_id, flag="duplicate", order="nearest_synthetic_distance")
    response = httpx.get(
        f"{service.url}/v1/audits/{audit_id}/samples",
        params={"format": "parquet", "side": "real"},
        headers={"Authorization": f"Bearer {service.admin_key}"},
    )
    assert (
        response.status_code == 200 and response.headers["content-type"] == "application/vnd.apache.parquet"
    )
    assert f'filename="{audit_id}-real.parquet"' in response.headers["content-disposition"]
    assert pq.read_table(io.BytesIO(response.content)).num_rows == N_REAL

    table = pq.read_table(io.BytesIO(content))
    assert table.schema.metadata[b"auditor.samples.side"] == b"synthetic"
    assert table.column("index").to_pylist() == [row["index"] for row in rows]
    assert table.column("nearest_synthetic_distance").to_pylist() == [
        row["nearest_synthetic_distance"] for row in rows
    ]
    assert all(table.column("duplicate").to_pylist())


def test_a_project_key_reads_only_its_own_projects_samples(service) -> None:  # type: ignore[no-untyped-def]
    paths = write_copies(service.home / "copies")
    with service.client() as admin:
        audit_id = run(admin, audit_body(paths, project="faces"))["id"]
    with service.client(service.project_key("faces")) as own:
        assert own.samples(audit_id, limit=1)["total"] == N_SYNTHETIC
        assert own.samples(audit_id[:8], limit=1)["audit_id"] == audit_id
    with service.client(service.project_key("other")) as other:
        assert refusal(other, audit_id).http_status == 403
        # A prefix is looked up in the key's own project only: another project's audit is not found.
        assert refusal(other, audit_id[:8]).code == "not_found"
        with pytest.raises(ApiError) as caught:
            other.samples_parquet(audit_id)
        assert caught.value.http_status == 403
    unauthenticated = httpx.get(f"{service.url}/v1/audits/{audit_id}/samples")
    assert unauthenticated.status_code == 401


# The size-bound audit warns from the in-process worker's thread; its document records the warning.
@pytest.mark.filterwarnings("ignore::auditor.metrics.warnings.DiagnosticsWarning")
def test_refusals_say_why(service, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    paths = write_copies(service.home / "copies")
    with service.client() as client:
        audit_id = run(client, audit_body(paths))["id"]
        assert refusal(client, "f" * 32).code == "not_found"
        wrong_side = refusal(client, audit_id, side="synthetic", flag="uncovered")
        assert (wrong_side.http_status, wrong_side.code) == (422, "invalid_filter")
        assert "about real samples, not synthetic" in wrong_side.message
        assert refusal(client, audit_id, side="real", order="nearest_real_distance").code == "invalid_filter"
        assert refusal(client, audit_id, flag="sharp").code == "invalid_request"  # not in the enum
        assert refusal(client, audit_id, limit=1001).code == "invalid_request"
        assert refusal(client, audit_id, cursor="bm90LWEtY3Vyc29y").code == "invalid_cursor"
        first = client.samples(audit_id, limit=2, order="nearest_real_distance")
        other_order = refusal(client, audit_id, cursor=first["next_cursor"])
        assert other_order.code == "invalid_cursor" and "order='nearest_real_distance'" in other_order.message

        fid_only = run(client, audit_body(paths, metrics=["fid"]))["id"]
        none_made = refusal(client, fid_only)
        assert (none_made.http_status, none_made.code) == (404, "no_diagnostics")
        assert "no k-NN or mode metric was requested" in none_made.message

        modes_only = run(client, audit_body(paths, metrics=["mode_coverage"]))
        assert modes_only["result"]["diagnostics"]["computed"] == {"knn": False, "modes": True}
        page = client.samples(modes_only["id"], mode=0)
        assert page["total"] > 0 and all(
            row["mode"] == 0 and row["memorized"] is None for row in page["items"]
        )
        not_computed = refusal(client, modes_only["id"], flag="memorized")
        assert (not_computed.http_status, not_computed.code) == (409, "not_computed")

        knn_only = run(client, audit_body(paths, metrics=["precision"]))["id"]
        assert refusal(client, knn_only, mode=1).code == "not_computed"
        assert client.samples(knn_only, limit=1)["items"][0]["mode"] == -1

        no_holdout = run(client, {**audit_body(paths), "holdout": None})["id"]
        assert refusal(client, no_holdout, side="holdout").code == "no_diagnostics"

        monkeypatch.setattr(service.context.settings, "max_artifact_mb", 0)
        too_big = run(client, audit_body(paths))
        assert too_big["result"]["diagnostics"]["artifacts"] == []
        assert any(w["category"] == "DiagnosticsWarning" for w in too_big["result"]["warnings"])
        over = refusal(client, too_big["id"])
        assert over.code == "no_diagnostics" and "AUDITOR_MAX_ARTIFACT_MB=0" in over.message

    spec = AuditSpec(real=DatasetRef(uri=paths["real"]), synthetic=DatasetRef(uri=paths["synthetic"]))
    queued = record_queued_audit(service.context, spec)
    with service.client() as client:
        unfinished = refusal(client, queued)
    assert (unfinished.http_status, unfinished.code) == (409, "conflict")
