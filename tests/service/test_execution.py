"""Task bodies run in this process on a real database (SQLite and PostgreSQL): progress written to the
audit row (throttled, the final state always recorded), cancellation seen by a progress write, and the
number of transactions a small audit costs (each one is CPU on a shared database server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from helpers.audits import record_queued_audit
from sqlalchemy import event

from auditor.config import Settings
from auditor.db import lifecycle, queries
from auditor.db.base import utcnow
from auditor.db.models import Audit
from auditor.pipeline.spec import AuditSpec
from auditor.service import execution
from auditor.service.context import ServiceContext
from auditor.service.execution import AuditCancelled, DatabaseProgress


@pytest.fixture
def context(migrated_database_url: str, tmp_path: Path) -> Iterator[ServiceContext]:
    settings = Settings(database_url=migrated_database_url, home=tmp_path / "home")
    context = ServiceContext.from_settings(settings, migrate=False)
    yield context
    context.engine.dispose()


def queued_audit(context: ServiceContext, tmp_path: Path, n: int = 300) -> str:
    rng = np.random.default_rng(3)
    np.save(tmp_path / "real.npy", rng.normal(size=(n, 8)).astype(np.float32))
    np.save(tmp_path / "synthetic.npy", (rng.normal(size=(n, 8)) + 0.3).astype(np.float32))
    spec = AuditSpec.model_validate(
        {
            "project": "p",
            "real": {"uri": str(tmp_path / "real.npy")},
            "synthetic": {"uri": str(tmp_path / "synthetic.npy")},
            "params": {"metrics": ["fid", "precision", "recall"], "bootstrap": 5},
        }
    )
    audit_id = record_queued_audit(context, spec)
    return audit_id


def stored_progress(context: ServiceContext, audit_id: str) -> dict[str, dict[str, object]]:
    with context.session() as session:
        return dict(queries.get_audit(session, audit_id).progress or {})


def test_short_stages_cost_no_write_until_taken(context: ServiceContext, tmp_path: Path) -> None:
    audit_id = queued_audit(context, tmp_path)
    progress = DatabaseProgress(context, audit_id, prefix="embed:real:0:")
    progress.start("load", 2)
    progress.advance("load")
    progress.finish("load")
    progress.start("embed", 10)
    assert stored_progress(context, audit_id) == {}  # nothing written yet: all within half a second
    pending = progress.take_pending()
    assert pending == {
        "embed:real:0:embed": {"done": 0, "total": 10, "state": "running"},
        "embed:real:0:load": {"done": 2, "total": 2, "state": "done"},
    }
    assert progress.take_pending() == {}  # taken once
    with context.session() as session:
        assert lifecycle.set_progress(session, audit_id, pending) is False
    assert stored_progress(context, audit_id) == pending


def test_a_long_stage_shows_progress_while_it_runs(
    context: ServiceContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execution, "_PROGRESS_EVERY_S", 0.05)
    audit_id = queued_audit(context, tmp_path)
    progress = DatabaseProgress(context, audit_id)
    progress.start("embed", 4)
    for _ in range(3):
        time.sleep(0.06)
        progress.advance("embed")
    assert stored_progress(context, audit_id)["embed"] == {"done": 3, "total": 4, "state": "running"}
    # Writes merge per stage: another reporter's stage is kept.
    other = DatabaseProgress(context, audit_id, prefix="embed:synthetic:0:")
    time.sleep(0.06)
    other.start("embed", 2)
    assert set(stored_progress(context, audit_id)) == {"embed", "embed:synthetic:0:embed"}


def test_a_progress_write_sees_the_cancel_flag(
    context: ServiceContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execution, "_PROGRESS_EVERY_S", 0.0)
    audit_id = queued_audit(context, tmp_path)
    progress = DatabaseProgress(context, audit_id)
    progress.start("embed", 4)
    with context.session() as session:
        lifecycle.request_cancel(session, audit_id)
    with pytest.raises(AuditCancelled):
        progress.advance("embed")


def test_a_precomputed_audit_takes_two_transactions(
    context: ServiceContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Progress is written at most every _PROGRESS_EVERY_S: on a loaded machine the audit can outlast
    # the default 0.5 s and write once in between, so the count is checked with the throttle out of reach.
    monkeypatch.setattr(execution, "_PROGRESS_EVERY_S", 600.0)
    audit_id = queued_audit(context, tmp_path)
    commits: list[int] = []
    event.listen(context.engine, "commit", lambda connection: commits.append(1))
    execution.start_audit(context, audit_id)
    # Claim + load, then progress + result (its per-sample tables included) together; every stage's
    # final progress is recorded.
    assert len(commits) == 2
    with context.session() as session:
        audit = queries.get_audit(session, audit_id)
        assert audit.state == "succeeded", audit.error_message
        stored = [artifact.name for artifact in queries.audit_artifacts(session, audit_id)]
        assert stored == ["samples/real.parquet", "samples/synthetic.parquet"]
        assert audit.progress["load"] == {"done": 2, "total": 2, "state": "done"}
        assert all(entry["state"] == "done" for entry in audit.progress.values())


class RecordingDispatcher:
    """Records what the sweeper sends (the broker path itself is tested with real Redis in tests/workers)."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def enqueue_start(self, audit_id: str) -> None:
        self.started.append(audit_id)

    def enqueue_embed(self, audit_id: str, side: str, index: int = 0, count: int = 1) -> None:
        raise AssertionError("the sweeper only re-sends start tasks")

    def enqueue_score(self, audit_id: str) -> None:
        raise AssertionError("the sweeper only re-sends start tasks")

    def ping(self) -> None:
        pass


def set_times(context: ServiceContext, audit_id: str, **ages_s: float | None) -> None:
    now = utcnow()
    values = {name: None if age is None else now - timedelta(seconds=age) for name, age in ages_s.items()}
    with context.session() as session:
        session.execute(sa.update(Audit).where(Audit.id == audit_id).values(**values))


def test_queued_audits_are_re_sent_with_backoff(context: ServiceContext, tmp_path: Path) -> None:
    context.settings.heartbeat_timeout_s = 30
    dispatcher = RecordingDispatcher()
    context.dispatcher = dispatcher
    audit_id = queued_audit(context, tmp_path)

    set_times(context, audit_id, created_at=20, heartbeat_at=None)
    assert execution.sweep_stale(context) == []  # queued 20 s: within the threshold, just waiting
    set_times(context, audit_id, created_at=100, heartbeat_at=None)
    assert execution.sweep_stale(context) == [audit_id]  # 100 s: its message is presumed lost
    assert dispatcher.started == [audit_id]
    assert execution.sweep_stale(context) == []  # just re-sent

    # Re-sent 40 s ago after waiting 60 s: it waits 60 s again before the next re-send.
    set_times(context, audit_id, created_at=100, heartbeat_at=40)
    assert execution.sweep_stale(context) == []
    set_times(context, audit_id, created_at=100, heartbeat_at=70)  # waited 30 s, then 70 s since
    assert execution.sweep_stale(context) == [audit_id]
    # The wait is capped: an audit queued for a day is still re-sent within 8 thresholds.
    set_times(context, audit_id, created_at=86_400, heartbeat_at=8 * 30 + 1)
    assert execution.sweep_stale(context) == [audit_id]
    with context.session() as session:
        messages = [event.message for event in queries.audit_events(session, audit_id)]
    assert messages.count("re-sent: still queued, its task message may have been lost") == 3


def test_a_running_audit_without_heartbeat_is_requeued_then_failed_after_its_attempts(
    context: ServiceContext, tmp_path: Path
) -> None:
    context.settings.heartbeat_timeout_s = 30
    context.dispatcher = RecordingDispatcher()
    audit_id = queued_audit(context, tmp_path)
    with context.session() as session:
        assert lifecycle.claim_audit(session, audit_id, "w1", stale_after=timedelta(seconds=30))
    set_times(context, audit_id, heartbeat_at=10)
    assert execution.sweep_stale(context) == []  # alive
    set_times(context, audit_id, heartbeat_at=31)
    assert execution.sweep_stale(context, max_attempts=2) == [audit_id]
    with context.session() as session:
        audit = queries.get_audit(session, audit_id)
        assert (audit.state, audit.worker) == ("queued", None)
        assert lifecycle.claim_audit(session, audit_id, "w2", stale_after=timedelta(seconds=30))
    set_times(context, audit_id, heartbeat_at=31)
    assert execution.sweep_stale(context, max_attempts=2) == []
    with context.session() as session:
        audit = queries.get_audit(session, audit_id)
        assert (audit.state, audit.error_code) == ("failed", "worker_lost")
