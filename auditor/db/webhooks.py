"""Webhook subscriptions, the delivery outbox, and the senders' compare-and-set claims.

The outbox: :func:`record_audit_events` runs inside the transaction that finishes an audit
(:func:`auditor.db.queries.complete_audit` / ``fail_audit``), so an audit is never finished without
its deliveries, nor a delivery written for an audit that then rolled back. Senders
(:mod:`auditor.service.webhooks`) poll :func:`due_deliveries` and take one with :func:`claim_delivery`,
a conditional ``UPDATE`` that any number of senders can race on (exactly one wins). A claim counts the
attempt, inserts its row, and moves ``next_attempt_at`` to the end of the attempt's lease: a sender
killed mid-attempt leaves the delivery pending, taken again when the lease is over (at least once).
:func:`finish_attempt` records the outcome only if the claim is still the latest.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from auditor.db.base import utcnow
from auditor.db.models import Audit, Project, Webhook, WebhookAttempt, WebhookDelivery
from auditor.errors import NotFoundError, TooManyWebhooksError
from auditor.webhooks import build_payload, events_for

MAX_SETTING = "AUDITOR_MAX_WEBHOOKS_PER_PROJECT"
INTERRUPTED = "interrupted"


# --- subscriptions --------------------------------------------------------------------------------------


def create_webhook(
    session: Session, *, project: Project, url: str, events: list[str], secret: str, limit: int
) -> Webhook:
    """Subscribe ``url`` to ``events`` of ``project``; :class:`TooManyWebhooksError` past ``limit``."""
    if session.get_bind().dialect.name == "postgresql":
        # Serialise concurrent subscriptions of one project, so two cannot both pass the count.
        session.execute(sa.select(Project.id).where(Project.id == project.id).with_for_update())
    count = session.scalar(sa.select(sa.func.count()).where(Webhook.project_id == project.id)) or 0
    if count >= limit:
        raise TooManyWebhooksError(
            f"project {project.name!r} has {count} webhooks, the most allowed here ({MAX_SETTING}={limit}); "
            "remove one first",
            details={"project": project.name, "limit": limit, "setting": MAX_SETTING},
        )
    webhook = Webhook(
        id=uuid.uuid4().hex,
        project_id=project.id,
        url=url,
        events=list(events),
        secret=secret,
        created_at=utcnow(),
    )
    session.add(webhook)
    session.flush()
    return webhook


def list_webhooks(session: Session, project: Project) -> list[Webhook]:
    return list(
        session.scalars(
            sa.select(Webhook)
            .where(Webhook.project_id == project.id)
            .order_by(Webhook.created_at, Webhook.id)
        )
    )


def get_webhook(session: Session, project: Project, webhook_id: str) -> Webhook:
    """A subscription of ``project``; another project's is :class:`NotFoundError` like an unknown id."""
    webhook = session.scalar(
        sa.select(Webhook).where(Webhook.id == webhook_id, Webhook.project_id == project.id)
    )
    if webhook is None:
        raise NotFoundError(
            f"project {project.name!r} has no webhook {webhook_id!r}",
            details={"project": project.name, "webhook_id": webhook_id},
        )
    return webhook


def delete_webhook(session: Session, project: Project, webhook_id: str) -> None:
    """Unsubscribe: pending deliveries are dropped with it, and its delivery log (ON DELETE CASCADE)."""
    webhook = get_webhook(session, project, webhook_id)
    session.execute(sa.delete(Webhook).where(Webhook.id == webhook.id))
    session.expunge(webhook)


@dataclass(frozen=True)
class AttemptRow:
    number: int
    sender: str
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    status_code: int | None
    error_code: str | None
    error: str | None


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    webhook_id: str
    audit_id: str
    event: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    attempt_log: list[AttemptRow]


def list_deliveries(
    session: Session, webhook: Webhook, *, limit: int = 50, state: str | None = None
) -> list[DeliveryRow]:
    """A subscription's deliveries, newest first, each with every attempt (two queries in all)."""
    query = sa.select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
    if state is not None:
        query = query.where(WebhookDelivery.state == state)
    deliveries = list(
        session.scalars(
            query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit)
        )
    )
    attempts: dict[str, list[AttemptRow]] = {delivery.id: [] for delivery in deliveries}
    if deliveries:
        rows = session.scalars(
            sa.select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(attempts))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
        )
        for row in rows:
            attempts[row.delivery_id].append(
                AttemptRow(
                    number=row.number,
                    sender=row.sender,
                    started_at=row.started_at,
                    finished_at=row.finished_at,
                    duration_s=row.duration_s,
                    status_code=row.status_code,
                    error_code=row.error_code,
                    error=row.error,
                )
            )
    return [
        DeliveryRow(
            id=d.id,
            webhook_id=d.webhook_id,
            audit_id=d.audit_id,
            event=d.event,
            state=d.state,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at if d.state == "pending" else None,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            created_at=d.created_at,
            finished_at=d.finished_at,
            attempt_log=attempts[d.id],
        )
        for d in deliveries
    ]


# --- the outbox -----------------------------------------------------------------------------------------


def record_audit_events(session: Session, audit: Audit) -> int:
    """Write the deliveries of the events ``audit`` just emitted (its state is final), one per matching
    subscription; returns how many were new. Part of the caller's transaction (the outbox).

    One query when the project has no subscription. A delivery already written for the same
    (subscription, audit, event) is kept (``ON CONFLICT DO NOTHING``): a re-scored audit, or two
    duplicate tasks completing it at once, notify once.
    """
    events = events_for(audit.state, audit.passed)
    if not events:
        return 0
    webhooks = session.execute(
        sa.select(Webhook.id, Webhook.events).where(Webhook.project_id == audit.project_id)
    ).all()
    wanted = [
        (webhook_id, event) for webhook_id, subscribed in webhooks for event in events if event in subscribed
    ]
    if not wanted:
        return 0
    project = session.scalar(sa.select(Project.name).where(Project.id == audit.project_id)) or ""
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for webhook_id, event in wanted:
        delivery_id = uuid.uuid4().hex
        payload = build_payload(
            delivery_id=delivery_id,
            event=event,
            project=project,
            audit_id=audit.id,
            state=audit.state,
            passed=audit.passed,
            generation=audit.generation,
            tags=list(audit.tags or []),
            created_at=audit.created_at,
            finished_at=audit.finished_at,
            duration_s=audit.duration_s,
            error_code=audit.error_code,
            error_message=audit.error_message,
            document=audit.result,
        )
        rows.append(
            {
                "id": delivery_id,
                "webhook_id": webhook_id,
                "audit_id": audit.id,
                "event": event,
                "payload": payload,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
        )
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    result = session.execute(insert(WebhookDelivery).on_conflict_do_nothing(), rows)
    return int(getattr(result, "rowcount", 0) or 0)


# --- senders --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DueDelivery:
    id: str
    attempts: int


@dataclass(frozen=True)
class Claim:
    """A delivery taken by one sender for one attempt (``number``), with what the attempt needs."""

    delivery_id: str
    number: int
    event: str
    url: str
    secret: str = field(repr=False)  # never in a log line or a traceback
    payload: dict[str, Any]


def due_deliveries(session: Session, *, limit: int, now: datetime | None = None) -> list[DueDelivery]:
    """Pending deliveries whose next attempt is due, oldest due first (the index on state, due time)."""
    rows = session.execute(
        sa.select(WebhookDelivery.id, WebhookDelivery.attempts)
        .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= (now or utcnow()))
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return [DueDelivery(row.id, row.attempts) for row in rows]


def claim_delivery(
    session: Session, due: DueDelivery, *, sender: str, lease: timedelta, now: datetime | None = None
) -> Claim | None:
    """Take a due delivery for one attempt (compare-and-set on its attempt count); None when another
    sender took it first or it is no longer due. An earlier attempt that never finished is recorded as
    interrupted (its sender died: the lease ran out)."""
    now = now or utcnow()
    number = due.attempts + 1
    result = session.execute(
        sa.update(WebhookDelivery)
        .where(
            WebhookDelivery.id == due.id,
            WebhookDelivery.state == "pending",
            WebhookDelivery.attempts == due.attempts,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(attempts=number, next_attempt_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        return None
    session.execute(
        sa.update(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == due.id, WebhookAttempt.finished_at.is_(None))
        .values(
            finished_at=now,
            error_code=INTERRUPTED,
            error="the attempt never finished: its sender stopped (killed or lost) before recording it",
        )
        .execution_options(synchronize_session=False)
    )
    session.add(WebhookAttempt(delivery_id=due.id, number=number, sender=sender[:200], started_at=now))
    row = session.execute(
        sa.select(WebhookDelivery.event, WebhookDelivery.payload, Webhook.url, Webhook.secret)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.id == due.id)
    ).one()
    session.flush()
    return Claim(
        delivery_id=due.id,
        number=number,
        event=row.event,
        url=row.url,
        secret=row.secret,
        payload=dict(row.payload),
    )


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: ``delivered``, or ``retry_at`` (None: no further attempt)."""

    delivered: bool
    duration_s: float
    status_code: int | None = None
    error_code: str | None = None
    error: str | None = None
    retry_at: datetime | None = None


def finish_attempt(session: Session, claim: Claim, outcome: Outcome, *, now: datetime | None = None) -> bool:
    """Record the attempt's outcome, and the delivery's new state if this claim is still the latest
    (a sender that outlived its lease records what happened, and leaves the delivery to the newer
    attempt). Returns whether the delivery was updated."""
    now = now or utcnow()
    session.execute(
        sa.update(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == claim.delivery_id, WebhookAttempt.number == claim.number)
        .values(
            finished_at=now,
            duration_s=round(outcome.duration_s, 6),
            status_code=outcome.status_code,
            error_code=outcome.error_code,
            error=outcome.error,
        )
        .execution_options(synchronize_session=False)
    )
    if outcome.delivered:
        state, due, finished = "delivered", None, now
    elif outcome.retry_at is not None:
        state, due, finished = "pending", outcome.retry_at, None
    else:
        state, due, finished = "failed", None, now
    result = session.execute(
        sa.update(WebhookDelivery)
        .where(
            WebhookDelivery.id == claim.delivery_id,
            WebhookDelivery.state == "pending",
            WebhookDelivery.attempts == claim.number,
        )
        .values(
            state=state,
            next_attempt_at=due,
            finished_at=finished,
            last_status_code=outcome.status_code,
            last_error=None if outcome.delivered else outcome.error,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))
