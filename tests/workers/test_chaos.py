"""Chaos, small: 30 audits through the real stack while a worker is SIGKILLed mid-audit and Redis restarts.

The suite-sized version of ``bench/bench_chaos.py`` (200 audits, 5 kills, 2 restarts; results in
bench/RESULTS_chaos.md). Two ``auditor worker`` subprocesses on the session's private redis-server (no
persistence: a restart loses every queued message) and a fresh PostgreSQL schema, audits submitted over
HTTP while the faults happen. Required: none lost (accepted, yet not in the database), none stuck (still
queued or running at the deadline), and every one succeeded: a kill costs an audit one attempt (3 are
allowed), a restart only messages, which the sweeper re-sends from SQL.

Deterministic by construction: the worker killed is the one running the one heavy audit (seconds long,
so it is caught running, not finished), the audits submitted while Redis is down are known to have no
message at all, and every wait is a polled condition with a deadline (the heartbeat timeout is 3 s and
the sweep interval 1 s, see ``WORKER_SETTINGS`` in conftest.py).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from helpers.services import WorkerProcess, wait_for, write_embeddings

from auditor.db.models import Audit, AuditEvent

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
N_AUDITS = 30
HEAVY_INDEX = 3  # the audit whose worker is killed
SMALL = {"metrics": ["fid", "precision", "recall", "coverage"], "bootstrap": 20, "spectral_bootstrap": 5}
HEAVY = {"bootstrap": 400, "spectral_bootstrap": 40}  # 12000 x 64: ~4 s on 2 cores, caught running


def audit_body(paths: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
    return {"real": {"uri": paths["real"]}, "synthetic": {"uri": paths["synthetic"]}, "params": params}


def heavy_paths(directory: Path) -> dict[str, str]:
    rng = np.random.default_rng(1)
    directory.mkdir()
    np.save(directory / "real.npy", rng.normal(size=(12000, 64)).astype(np.float32))
    np.save(directory / "synthetic.npy", rng.normal(size=(12000, 64)).astype(np.float32))
    return {"real": str(directory / "real.npy"), "synthetic": str(directory / "synthetic.npy")}


def worker_name(worker: WorkerProcess) -> str:
    assert worker.process is not None
    return f"{socket.gethostname()}:{worker.process.pid}"


def test_no_audit_is_lost_or_stuck_through_a_worker_kill_and_a_redis_restart(cluster) -> None:  # type: ignore[no-untyped-def]
    small = audit_body(write_embeddings(cluster.home / "small"), SMALL)
    heavy = audit_body(heavy_paths(cluster.home / "heavy"), HEAVY)
    # Both workers at once: start-up (importing torch) is most of a worker's cost here.
    pending = [WorkerProcess(cluster.env, cluster.home / f"worker-{i}.log") for i in range(2)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        cluster.workers.extend(pool.map(WorkerProcess.start, pending))

    ids: dict[int, str] = {}
    outage = (N_AUDITS - 2, N_AUDITS - 1)  # submitted while Redis is down, by the test itself
    paced = [i for i in range(N_AUDITS) if i not in outage]
    submit_errors: list[BaseException] = []

    def submit_paced() -> None:
        try:
            with cluster.client() as client:
                start = time.monotonic()
                for n, index in enumerate(paced):
                    time.sleep(max(0.0, start + n / 4 - time.monotonic()))  # 4 per second: the load
                    key = f"chaos-{index}"
                    ids[index] = client.submit(heavy if index == HEAVY_INDEX else small, idempotency_key=key)[
                        "id"
                    ]
        except BaseException as exc:  # surfaced by the main thread
            submit_errors.append(exc)

    submitter = threading.Thread(target=submit_paced, name="chaos-submitter", daemon=True)
    submitter.start()

    def state_of(audit_id: str) -> tuple[str, str | None]:
        with cluster.context.session() as session:
            row = session.execute(sa.select(Audit.state, Audit.worker).where(Audit.id == audit_id)).one()
            return row.state, row.worker

    # Fault 1: SIGKILL the worker running the heavy audit, mid-audit, and start a replacement at once.
    wait_for(lambda: HEAVY_INDEX in ids or submit_errors, 30, "the heavy audit to be submitted")
    assert not submit_errors, submit_errors
    heavy_id = ids[HEAVY_INDEX]
    wait_for(lambda: state_of(heavy_id)[0] == "running", 60, "the heavy audit to start")
    victim = next(w for w in cluster.workers if worker_name(w) == state_of(heavy_id)[1])
    victim.kill()
    assert state_of(heavy_id) == ("running", worker_name(victim))  # killed mid-audit, not after it
    cluster.start_worker()

    # Fault 2: restart Redis (no persistence: queued messages vanish); two audits arrive meanwhile.
    wait_for(lambda: len(ids) >= len(paced) - 4 or submit_errors, 60, "most audits to be submitted")
    cluster.redis.stop()
    try:
        with cluster.client() as client:
            for index in outage:
                accepted = client.submit(small, idempotency_key=f"chaos-{index}")
                assert accepted["state"] == "queued"  # recorded; its message could not be sent
                ids[index] = accepted["id"]
    finally:
        cluster.redis.start()
    submitter.join(60)
    assert not submitter.is_alive() and not submit_errors, submit_errors
    assert sorted(ids) == list(range(N_AUDITS))

    def final_count() -> bool:
        with cluster.context.session() as session:
            query = sa.select(sa.func.count()).where(
                Audit.id.in_(ids.values()), Audit.state.in_(("succeeded", "failed", "cancelled"))
            )
            return session.scalar(query) == N_AUDITS

    with contextlib.suppress(AssertionError):  # the classification below says which, and why
        wait_for(final_count, 90, "every audit to be final")
    with cluster.context.session() as session:
        rows = {a.id: a for a in session.scalars(sa.select(Audit).where(Audit.id.in_(ids.values())))}
        events: dict[str, list[str]] = {}
        for event in session.scalars(sa.select(AuditEvent).where(AuditEvent.audit_id.in_(ids.values()))):
            events.setdefault(event.audit_id, []).append(event.message or "")
        session.expunge_all()

    lost = [i for i in ids.values() if i not in rows]
    stuck = {i: a.state for i, a in rows.items() if a.state in ("queued", "running")}
    failed = {
        i: (a.state, a.error_code, a.error_message)
        for i, a in rows.items()
        if a.state not in ("succeeded", "queued", "running")
    }
    assert (lost, stuck, failed) == ([], {}, {}), cluster.logs()

    # The kill: the heavy audit was requeued by the sweeper and finished by another worker.
    assert rows[heavy_id].attempts == 2
    assert any("requeued: no heartbeat" in m for m in events[heavy_id]), events[heavy_id]
    claimed = {m.removeprefix("claimed by ") for m in events[heavy_id] if m.startswith("claimed by")}
    assert worker_name(victim) in claimed and len(claimed) == 2, claimed
    # The restart: audits accepted with no message at all were re-sent from SQL by the sweeper.
    for index in outage:
        assert any("re-sent" in m for m in events[ids[index]]), events[ids[index]]
