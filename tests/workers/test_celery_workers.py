"""Real Celery worker processes on a real Redis, results in the real PostgreSQL, submitted over HTTP."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from helpers.services import wait_for, write_embeddings

from auditor.db.models import Audit

pytestmark = pytest.mark.postgres
FAST = {"metrics": ["fid", "precision", "recall", "coverage"], "bootstrap": 20, "spectral_bootstrap": 5}


def body(paths: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"real": {"uri": paths["real"]}, "synthetic": {"uri": paths["synthetic"]}, "params": FAST, **extra}


def audit_row(cluster, audit_id: str) -> Audit:  # type: ignore[no-untyped-def]
    with cluster.context.session() as session:
        row = session.get(Audit, audit_id)
        assert row is not None
        session.expunge(row)
        return row


def test_worker_completes_submitted_audits_and_trends_read_them(cluster) -> None:  # type: ignore[no-untyped-def]
    cluster.start_worker()
    ids = []
    with cluster.client() as client:
        parent = None
        for generation, shift in enumerate((0.0, 0.7)):
            paths = write_embeddings(cluster.home / f"g{generation}", shift=shift)
            audit = client.submit(body(paths, project="p", generation=generation, parent_audit_id=parent))
            parent = audit["id"]
            ids.append(audit["id"])
        done = [client.wait(i, timeout=120, poll_s=0.3) for i in ids]
        trends = client.trends("p", "fid")
        # The worker wrote the per-sample tables with the result, to SQL (never through the broker).
        off_support = client.samples(ids[0], flag="off_support", limit=1000)
    assert [d["state"] for d in done] == ["succeeded", "succeeded"], cluster.logs()
    row = audit_row(cluster, ids[0])
    assert row.source == "api" and row.worker and row.worker.split(":")[1].isdigit()
    assert row.worker.split(":")[1] != str(__import__("os").getpid())  # run by the worker process
    points = trends["series"][0]["points"]
    assert [p["audit_id"] for p in points] == ids
    assert points[0]["value"] < points[1]["value"]
    precision = done[0]["result"]["metrics"]["precision"]["value"]
    assert off_support["total"] == round((1 - precision) * 300) == len(off_support["items"])


def test_a_worker_killed_mid_audit_is_replaced_and_the_audit_completes(cluster) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    data = cluster.home / "big"
    data.mkdir()
    np.save(data / "real.npy", rng.normal(size=(12000, 64)).astype(np.float32))
    np.save(data / "synthetic.npy", rng.normal(size=(12000, 64)).astype(np.float32))
    heavy = {"bootstrap": 400, "spectral_bootstrap": 40}  # 12000 x 64: ~4 s on 2 cores, caught running
    first = cluster.start_worker()
    with cluster.client() as client:
        audit = client.submit(
            {
                "real": {"uri": str(data / "real.npy")},
                "synthetic": {"uri": str(data / "synthetic.npy")},
                "params": heavy,
            }
        )
        wait_for(lambda: client.get(audit["id"])["state"] == "running", 60, "the audit to start")
        time.sleep(1.0)
        first.kill()  # SIGKILL: no acknowledgement, no failure recorded, the heartbeat just stops
        assert client.get(audit["id"])["state"] == "running"
        cluster.start_worker()
        done = client.wait(audit["id"], timeout=240, poll_s=0.5)
    assert done["state"] == "succeeded", (done, cluster.logs())
    assert done["attempts"] >= 2
    messages = [e["message"] or "" for e in done["events"]]
    assert any("requeued" in m for m in messages), done["events"]
    workers = {m.removeprefix("claimed by ") for m in messages if m.startswith("claimed by")}
    assert len(workers) == 2, workers  # started by the killed worker, finished by the second


def test_redis_restart_loses_nothing(cluster) -> None:  # type: ignore[no-untyped-def]
    cluster.start_worker()
    paths = write_embeddings(cluster.home / "data")
    with cluster.client() as client:
        before = [client.submit(body(paths))["id"] for _ in range(3)]
        cluster.redis.stop()  # queued messages vanish with it (no persistence), workers lose the broker
        during = [client.submit(body(paths))["id"] for _ in range(2)]  # accepted while the broker is down
        assert all(client.get(i)["state"] in ("queued", "running", "succeeded") for i in during)
        time.sleep(1.0)
        cluster.redis.start()
        done = [client.wait(i, timeout=180, poll_s=0.5) for i in before + during]
    assert [d["state"] for d in done] == ["succeeded"] * 5, (done, cluster.logs())


def test_cancel_stops_a_running_audit(cluster) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    data = cluster.home / "big"
    data.mkdir()
    np.save(data / "real.npy", rng.normal(size=(12000, 64)).astype(np.float32))
    np.save(data / "synthetic.npy", rng.normal(size=(12000, 64)).astype(np.float32))
    cluster.start_worker()
    with cluster.client() as client:
        audit = client.submit(
            {
                "real": {"uri": str(data / "real.npy")},
                "synthetic": {"uri": str(data / "synthetic.npy")},
                "params": {"bootstrap": 400, "spectral_bootstrap": 40},
            }
        )
        wait_for(lambda: client.get(audit["id"])["state"] == "running", 60, "the audit to start")
        answer = client.cancel(audit["id"])
        assert answer["cancel_requested"] is True
        done = client.wait(audit["id"], timeout=120, poll_s=0.3)
        assert done["state"] == "cancelled", (done, cluster.logs())
        assert done["result"] is None
        assert [e["state"] for e in done["events"]][-2:] == ["cancel_requested", "cancelled"]


def test_cancel_a_queued_audit_without_workers(cluster) -> None:  # type: ignore[no-untyped-def]
    paths = write_embeddings(cluster.home / "data")
    with cluster.client() as client:
        audit = client.submit(body(paths))
        cancelled = client.cancel(audit["id"])
        assert cancelled["state"] == "cancelled"
        cluster.start_worker()  # the message is still in Redis: the worker must drop it
        time.sleep(3)
        assert client.get(audit["id"])["state"] == "cancelled"
        assert client.get(audit["id"])["attempts"] == 0


def test_readyz_reports_the_broker(cluster) -> None:  # type: ignore[no-untyped-def]
    import httpx

    assert httpx.get(f"{cluster.url}/readyz").status_code == 200
    cluster.redis.stop()
    try:
        down = httpx.get(f"{cluster.url}/readyz", timeout=30)
        assert down.status_code == 503
        assert down.json()["checks"]["database"] == "ok"
        assert down.json()["checks"]["broker"].startswith("unavailable")
    finally:
        cluster.redis.start()
    metrics = httpx.get(f"{cluster.url}/metrics").text
    assert 'auditor_queue_depth{queue="cpu"}' in metrics
