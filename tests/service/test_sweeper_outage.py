"""The sweeper during a broker outage (found by bench/bench_chaos.py's faults: a worker dying while Redis
is down, audits accepted while it is down).

Requeueing a stale audit and sending its ``start`` message are one unit: when the message cannot be
sent, the requeue is rolled back, so the audit is not marked "re-sent" for a message that does not
exist. Before, the requeue committed first (state ``queued``, re-send time now) and the send then
failed: the audit then counted as freshly re-sent, and waited the re-send backoff (up to 8 heartbeat
timeouts, 40 minutes at the default 300 s) after the broker was back, before anything sent it again.
Now the first sweep after the broker returns sends it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from auditor.config import Settings
from auditor.db import lifecycle, queries
from auditor.db.base import utcnow
from auditor.db.models import Audit
from auditor.errors import ServiceUnavailableError
from auditor.service import execution
from auditor.service.context import ServiceContext

TIMEOUT_S = 30


class FlakyBroker:
    """A dispatcher whose broker is down until ``up`` is set."""

    def __init__(self) -> None:
        self.up = False
        self.started: list[str] = []
        self.refused = 0

    def enqueue_start(self, audit_id: str) -> None:
        if not self.up:
            self.refused += 1
            raise ServiceUnavailableError("cannot reach the broker to queue auditor.start: refused")
        self.started.append(audit_id)

    def enqueue_embed(self, audit_id: str, side: str, index: int = 0, count: int = 1) -> None:
        raise AssertionError("the sweeper only sends start tasks")

    def enqueue_score(self, audit_id: str) -> None:
        raise AssertionError("the sweeper only sends start tasks")

    def ping(self) -> None:
        pass


@pytest.fixture
def context(migrated_database_url: str, tmp_path: Path) -> Iterator[ServiceContext]:
    settings = Settings(database_url=migrated_database_url, home=tmp_path / "home")
    settings.heartbeat_timeout_s = TIMEOUT_S
    context = ServiceContext.from_settings(settings, migrate=False)
    context.dispatcher = FlakyBroker()
    yield context
    context.engine.dispose()


def new_audit(context: ServiceContext, *, created_s_ago: float) -> str:
    audit_id = uuid.uuid4().hex
    with context.session() as session:
        queries.create_audit(
            session,
            audit_id=audit_id,
            project="p",
            spec={"real": {"uri": "r.npy"}, "synthetic": {"uri": "s.npy"}},
            extractor="precomputed",
            state="queued",
            source="api",
            fresh_id=True,
        )
        session.execute(
            sa.update(Audit)
            .where(Audit.id == audit_id)
            .values(created_at=utcnow() - timedelta(seconds=created_s_ago))
        )
    return audit_id


def row(context: ServiceContext, audit_id: str) -> tuple[str, object, list[str]]:
    with context.session() as session:
        audit = queries.get_audit(session, audit_id)
        messages = [event.message or "" for event in queries.audit_events(session, audit_id)]
        return audit.state, audit.heartbeat_at, messages


def test_a_dead_workers_audit_is_requeued_by_the_first_sweep_after_the_broker_returns(
    context: ServiceContext,
) -> None:
    broker = context.dispatcher
    assert isinstance(broker, FlakyBroker)
    audit_id = new_audit(context, created_s_ago=600)  # waited in a backlog, then its worker died
    with context.session() as session:
        assert lifecycle.claim_audit(session, audit_id, "w1", stale_after=timedelta(seconds=TIMEOUT_S))
        session.execute(
            sa.update(Audit)
            .where(Audit.id == audit_id)
            .values(heartbeat_at=utcnow() - timedelta(seconds=TIMEOUT_S + 1))
        )
    before = row(context, audit_id)

    assert execution.sweep_stale(context) == []  # the broker is down: nothing requeued...
    assert broker.refused == 1
    assert row(context, audit_id) == before  # ...and nothing changed: still running, stale, no event

    broker.up = True
    assert execution.sweep_stale(context) == [audit_id]  # the next sweep, not 8 timeouts later
    assert broker.started == [audit_id]
    state, _, messages = row(context, audit_id)
    assert state == "queued" and messages.count("requeued: no heartbeat from its worker") == 1


def test_an_audit_queued_while_the_broker_is_down_is_sent_by_the_first_sweep_after_it_returns(
    context: ServiceContext,
) -> None:
    broker = context.dispatcher
    assert isinstance(broker, FlakyBroker)
    first = new_audit(context, created_s_ago=TIMEOUT_S + 5)  # accepted, its message never sent
    second = new_audit(context, created_s_ago=TIMEOUT_S + 1)

    # Broker down: the sweep stops at the first refusal (no point trying the others) and marks nothing.
    assert execution.sweep_stale(context) == []
    assert broker.refused == 1
    for audit_id in (first, second):
        state, heartbeat_at, messages = row(context, audit_id)
        assert (state, heartbeat_at) == ("queued", None) and not any("re-sent" in m for m in messages)

    broker.up = True
    assert execution.sweep_stale(context) == [first, second]
    assert broker.started == [first, second]
