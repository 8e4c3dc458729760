"""auditor.db.webhooks on SQLite and PostgreSQL: the outbox is written with the audit's end (and rolls
back with it), notifies once per (subscription, audit, event), and senders' claims are compare-and-sets
whose leases let a dead sender's delivery be taken again."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from helpers.databases import make_document
from sqlalchemy.orm import Session, sessionmaker

from auditor.db import queries
from auditor.db import webhooks as rows
from auditor.db.base import utcnow
from auditor.db.models import Audit, Webhook, WebhookAttempt, WebhookDelivery
from auditor.db.session import session_scope
from auditor.errors import NotFoundError, TooManyWebhooksError

Factory = sessionmaker[Session]
LEASE = timedelta(seconds=30)


def subscribe(factory: Factory, project: str = "p", events: list[str] | None = None, limit: int = 10) -> str:
    with session_scope(factory) as session:
        webhook = rows.create_webhook(
            session,
            project=queries.get_or_create_project(session, project),
            url="https://hooks.example/x",
            events=events or ["audit.succeeded", "audit.failed", "gate.failed"],
            secret="s" * 20,
            limit=limit,
        )
        return webhook.id


def running_audit(factory: Factory, project: str = "p") -> str:
    audit_id = uuid.uuid4().hex
    with session_scope(factory) as session:
        queries.create_audit(
            session, audit_id=audit_id, project=project, spec={"project": project}, extractor="precomputed"
        )
    return audit_id


def deliveries(factory: Factory) -> list[tuple[str, str, str]]:
    with session_scope(factory) as session:
        query = sa.select(WebhookDelivery.webhook_id, WebhookDelivery.audit_id, WebhookDelivery.event)
        return sorted((row[0], row[1], row[2]) for row in session.execute(query))


def test_completing_an_audit_writes_one_delivery_per_matching_subscription(session_factory: Factory) -> None:
    everything = subscribe(session_factory)
    gate_only = subscribe(session_factory, events=["gate.failed"])
    subscribe(session_factory, project="other")  # another project's: nothing
    passed, failed_gate = running_audit(session_factory), running_audit(session_factory)
    with session_scope(session_factory) as session:
        queries.complete_audit(session, passed, make_document(passed, project="p", passed=True))
        queries.complete_audit(session, failed_gate, make_document(failed_gate, project="p", passed=False))
    assert deliveries(session_factory) == sorted(
        [
            (everything, passed, "audit.succeeded"),
            (everything, failed_gate, "audit.succeeded"),
            (everything, failed_gate, "gate.failed"),
            (gate_only, failed_gate, "gate.failed"),
        ]
    )
    with session_scope(session_factory) as session:
        row = session.scalars(
            sa.select(WebhookDelivery).where(WebhookDelivery.event == "gate.failed")
        ).first()
        assert row is not None and row.state == "pending" and row.attempts == 0
        assert row.payload["id"] == row.id and row.payload["project"] == "p"
        assert row.payload["audit"]["verdict"]["passed"] is False


def test_a_failed_audit_writes_audit_failed_and_rescoring_does_not_notify_twice(
    session_factory: Factory,
) -> None:
    webhook = subscribe(session_factory)
    failed, rescored = running_audit(session_factory), running_audit(session_factory)
    with session_scope(session_factory) as session:
        queries.fail_audit(session, failed, code="dimension_mismatch", message="real is 8-d, synthetic 4-d")
    for _ in range(2):  # a duplicate score task completes it again
        with session_scope(session_factory) as session:
            queries.complete_audit(session, rescored, make_document(rescored, project="p"))
    assert deliveries(session_factory) == sorted(
        [(webhook, failed, "audit.failed"), (webhook, rescored, "audit.succeeded")]
    )
    with session_scope(session_factory) as session:
        payload = session.scalar(sa.select(WebhookDelivery.payload).where(WebhookDelivery.audit_id == failed))
    assert payload is not None
    assert payload["audit"]["error"] == {
        "code": "dimension_mismatch",
        "message": "real is 8-d, synthetic 4-d",
    }


def test_the_outbox_rolls_back_with_the_audit(session_factory: Factory) -> None:
    subscribe(session_factory)
    audit_id = running_audit(session_factory)
    with pytest.raises(RuntimeError), session_scope(session_factory) as session:
        queries.complete_audit(session, audit_id, make_document(audit_id, project="p"))
        raise RuntimeError("the commit never happens")
    assert deliveries(session_factory) == []
    with session_scope(session_factory) as session:
        assert queries.get_audit(session, audit_id).state == "running"


def test_a_project_without_subscriptions_costs_one_query(session_factory: Factory) -> None:
    audit_id = running_audit(session_factory)
    statements: list[str] = []

    def record(_connection: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    with session_scope(session_factory) as session:
        queries.complete_audit(session, audit_id, make_document(audit_id, project="p"))
        audit = session.get(Audit, audit_id)
        assert audit is not None
        engine = session.get_bind()
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            assert rows.record_audit_events(session, audit) == 0
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
    assert len(statements) == 1 and "webhooks" in statements[0]


def test_the_subscription_limit_and_project_scoping(session_factory: Factory) -> None:
    first = subscribe(session_factory, limit=2)
    subscribe(session_factory, limit=2)
    with pytest.raises(TooManyWebhooksError) as refused:
        subscribe(session_factory, limit=2)
    assert refused.value.details == {
        "project": "p",
        "limit": 2,
        "setting": "AUDITOR_MAX_WEBHOOKS_PER_PROJECT",
    }
    subscribe(session_factory, project="q", limit=2)  # per project
    with session_scope(session_factory) as session:
        other = queries.get_or_create_project(session, "q")
        with pytest.raises(NotFoundError):
            rows.get_webhook(session, other, first)  # another project's id: as unknown
        rows.delete_webhook(session, queries.get_project(session, "p"), first)
    with session_scope(session_factory) as session:
        assert session.get(Webhook, first) is None


def due(factory: Factory) -> list[rows.DueDelivery]:
    with session_scope(factory) as session:
        return rows.due_deliveries(session, limit=10)


def claim(factory: Factory, delivery: rows.DueDelivery, sender: str, **kwargs: object) -> rows.Claim | None:
    with session_scope(factory) as session:
        return rows.claim_delivery(session, delivery, sender=sender, lease=LEASE, **kwargs)  # type: ignore[arg-type]


def test_one_claim_wins_and_a_dead_senders_delivery_is_taken_after_its_lease(
    session_factory: Factory,
) -> None:
    subscribe(session_factory, events=["audit.succeeded"])
    audit_id = running_audit(session_factory)
    with session_scope(session_factory) as session:
        queries.complete_audit(session, audit_id, make_document(audit_id, project="p"))
    [pending] = due(session_factory)
    first = claim(session_factory, pending, "host:1")
    assert first is not None and first.number == 1 and first.secret == "s" * 20
    assert claim(session_factory, pending, "host:2") is None  # the same read: lost the race
    assert due(session_factory) == []  # leased
    # host:1 dies. Once the lease is over the delivery is due again and another sender takes it.
    later = utcnow() + LEASE + timedelta(seconds=1)
    with session_scope(session_factory) as session:
        [again] = rows.due_deliveries(session, limit=10, now=later)
    assert again.attempts == 1
    second = claim(session_factory, again, "host:2", now=later)
    assert second is not None and second.number == 2 and second.payload == first.payload
    delivered = rows.Outcome(delivered=True, duration_s=0.01, status_code=204)
    with session_scope(session_factory) as session:
        assert rows.finish_attempt(session, second, delivered)
        # The dead sender's late report (it was only slow) is logged but changes nothing.
        assert not rows.finish_attempt(
            session, first, rows.Outcome(delivered=False, duration_s=9, error="late")
        )
    with session_scope(session_factory) as session:
        delivery = session.get(WebhookDelivery, pending.id)
        assert delivery is not None
        assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 204)
        attempts = session.scalars(sa.select(WebhookAttempt).order_by(WebhookAttempt.number)).all()
    assert [(a.number, a.sender) for a in attempts] == [(1, "host:1"), (2, "host:2")]
    assert attempts[1].status_code == 204 and attempts[1].error_code is None
    # Recorded as interrupted by the second claim, then overwritten by the late report of what happened.
    assert attempts[0].error == "late" and attempts[0].finished_at is not None


def test_an_unfinished_attempt_is_recorded_as_interrupted(session_factory: Factory) -> None:
    subscribe(session_factory, events=["audit.failed"])
    audit_id = running_audit(session_factory)
    with session_scope(session_factory) as session:
        queries.fail_audit(session, audit_id, code="worker_lost", message="gone")
    [pending] = due(session_factory)
    assert claim(session_factory, pending, "host:1") is not None
    later = utcnow() + LEASE + timedelta(seconds=1)
    assert claim(session_factory, rows.DueDelivery(pending.id, 1), "host:2", now=later) is not None
    with session_scope(session_factory) as session:
        [webhook] = session.scalars(sa.select(Webhook)).all()
        [row] = rows.list_deliveries(session, webhook)
    assert row.state == "pending" and row.attempts == 2
    assert [(a.number, a.error_code) for a in row.attempt_log] == [(1, "interrupted"), (2, None)]
    assert row.attempt_log[1].finished_at is None  # in flight


def test_retry_and_give_up(session_factory: Factory) -> None:
    subscribe(session_factory, events=["audit.succeeded"])
    audit_id = running_audit(session_factory)
    with session_scope(session_factory) as session:
        queries.complete_audit(session, audit_id, make_document(audit_id, project="p"))
    [pending] = due(session_factory)
    taken = claim(session_factory, pending, "host:1")
    assert taken is not None
    retry_at = utcnow() + timedelta(minutes=5)
    with session_scope(session_factory) as session:
        rows.finish_attempt(
            session,
            taken,
            rows.Outcome(False, 0.1, 500, "http_status", "HTTP 500", retry_at=retry_at),
        )
    assert due(session_factory) == []
    with session_scope(session_factory) as session:
        [again] = rows.due_deliveries(session, limit=5, now=retry_at)
        last = rows.claim_delivery(session, again, sender="host:1", lease=LEASE, now=retry_at)
        assert last is not None
        rows.finish_attempt(session, last, rows.Outcome(False, 0.1, None, "timeout", "no answer"))
    with session_scope(session_factory) as session:
        delivery = session.get(WebhookDelivery, pending.id)
        assert delivery is not None
        assert (delivery.state, delivery.next_attempt_at, delivery.last_error) == (
            "failed",
            None,
            "no answer",
        )
        assert delivery.finished_at is not None
