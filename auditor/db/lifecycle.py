"""The audit state machine as the service runs it: claim, heartbeat, progress, cancel, stuck detection.

Every transition is a conditional ``UPDATE ... WHERE state ...`` (compare-and-set), so any number of
workers, API processes and sweepers on any number of hosts can race on one audit and exactly one wins;
the loser sees ``rowcount == 0`` and backs off. Each successful transition appends an ``audit_events``
row, the audit's timeline::

    queued ──claim──> running ──complete──> succeeded
      │  ^               │ └────fail──────> failed
      │  └──requeue──────┘ (stale heartbeat: the worker died)
      └──cancel──> cancelled <──cancel (requested, honoured by the worker between steps)──┘
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from auditor.db.base import utcnow
from auditor.db.models import Audit
from auditor.db.queries import record_event
from auditor.errors import ConflictError, NotFoundError

TERMINAL_STATES = ("succeeded", "failed", "cancelled")


def claim_audit(session: Session, audit_id: str, worker: str, *, stale_after: timedelta) -> bool:
    """Take an audit to work on: queued, or running with a heartbeat older than ``stale_after``.

    A running audit with a fresh heartbeat belongs to a live worker: a redelivered duplicate of its task
    must not run it twice, so the claim fails. Returns whether this caller now holds the audit.
    """
    now = utcnow()
    result = session.execute(
        sa.update(Audit)
        .where(
            Audit.id == audit_id,
            Audit.cancel_requested.is_(False),
            sa.or_(
                Audit.state == "queued",
                sa.and_(
                    Audit.state == "running",
                    sa.or_(Audit.heartbeat_at.is_(None), Audit.heartbeat_at < now - stale_after),
                ),
            ),
        )
        .values(
            state="running",
            worker=worker[:200],
            attempts=Audit.attempts + 1,
            heartbeat_at=now,
            started_at=sa.func.coalesce(Audit.started_at, now),
        )
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) == 0:
        return False
    record_event(session, audit_id, "running", at=now, message=f"claimed by {worker}")
    return True


def heartbeat(session: Session, audit_id: str, worker: str | None = None) -> bool:
    """Refresh a running audit's heartbeat; False when it is no longer running (finished, cancelled)."""
    query = sa.update(Audit).where(Audit.id == audit_id, Audit.state == "running")
    if worker is not None:
        query = query.where(Audit.worker == worker[:200])
    result = session.execute(query.values(heartbeat_at=utcnow()).execution_options(synchronize_session=False))
    return _rowcount(result) > 0


def set_progress(session: Session, audit_id: str, stages: Mapping[str, Mapping[str, Any]]) -> bool:
    """Record stages' progress (``{stage: {"done", "total", "state"}}``, merged into the audit's; the
    last writer wins per stage) and refresh the heartbeat. Returns the audit's cancel flag, read under
    the same row lock, so a progress write is also a cancellation check.
    """
    audit = session.get(Audit, audit_id, with_for_update=_is_pg(session))
    if audit is None:
        raise NotFoundError(f"audit {audit_id!r} does not exist", details={"audit_id": audit_id})
    if stages:
        _merge_progress(audit, stages)
        audit.heartbeat_at = utcnow()
    return bool(audit.cancel_requested)


def _merge_progress(audit: Audit, stages: Mapping[str, Mapping[str, Any]]) -> None:
    # A new dict, not an in-place update: the JSON column only sees a reassignment as a change.
    audit.progress = {**(audit.progress or {}), **{name: dict(entry) for name, entry in stages.items()}}


def set_artifact(
    session: Session,
    audit_id: str,
    name: str,
    entry: dict[str, Any],
    *,
    progress: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Record one finished piece of work (an embedded shard) and return every piece recorded so far.

    ``progress``: stages' progress to merge in the same write (see :func:`set_progress`).
    """
    audit = session.get(Audit, audit_id, with_for_update=_is_pg(session))
    if audit is None:
        raise NotFoundError(f"audit {audit_id!r} does not exist", details={"audit_id": audit_id})
    artifacts = dict(audit.artifacts or {})
    artifacts[name] = entry
    audit.artifacts = artifacts
    if progress:
        _merge_progress(audit, progress)
    audit.heartbeat_at = utcnow()
    session.flush()
    return artifacts


def cancel_requested(session: Session, audit_id: str) -> bool:
    value = session.scalar(sa.select(Audit.cancel_requested).where(Audit.id == audit_id))
    return bool(value)


def request_cancel(session: Session, audit_id: str) -> str:
    """Cancel an audit: a queued one at once, a running one when its worker next checks.

    Returns the state after the request (``cancelled`` or ``running``); :class:`ConflictError` for an
    audit that already finished.
    """
    now = utcnow()
    queued = session.execute(
        sa.update(Audit)
        .where(Audit.id == audit_id, Audit.state == "queued")
        .values(state="cancelled", cancel_requested=True, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(queued):
        record_event(session, audit_id, "cancelled", at=now, message="cancelled before it started")
        return "cancelled"
    running = session.execute(
        sa.update(Audit)
        .where(Audit.id == audit_id, Audit.state == "running")
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(running):
        record_event(session, audit_id, "cancel_requested", at=now)
        return "running"
    state = session.scalar(sa.select(Audit.state).where(Audit.id == audit_id))
    if state is None:
        raise NotFoundError(f"audit {audit_id!r} does not exist", details={"audit_id": audit_id})
    if state == "cancelled":
        return "cancelled"
    raise ConflictError(
        f"audit {audit_id} already {state}; only queued or running audits can be cancelled",
        details={"audit_id": audit_id, "state": state},
    )


def mark_cancelled(session: Session, audit_id: str) -> bool:
    """The worker honours a cancel request: running -> cancelled."""
    now = utcnow()
    result = session.execute(
        sa.update(Audit)
        .where(Audit.id == audit_id, Audit.state.in_(("queued", "running")))
        .values(state="cancelled", finished_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result):
        record_event(session, audit_id, "cancelled", at=now, message="stopped by its worker")
        return True
    return False


# The longest wait between two re-sends of a queued audit, in multiples of the queued threshold.
RESEND_BACKOFF_CAP = 8


@dataclass(frozen=True)
class StaleAudit:
    id: str
    state: str
    created_at: datetime
    heartbeat_at: datetime | None
    attempts: int


def stale_audits(
    session: Session, *, heartbeat_older_than: timedelta, queued_older_than: timedelta
) -> list[StaleAudit]:
    """Audits nobody is working on: running with an old heartbeat, or queued for too long.

    A queued audit whose task message was lost (a broker restarted without persistence) looks the same
    as one waiting its turn behind a long queue. So a queued audit is re-sent once it has waited
    ``queued_older_than``, and after that only once it has waited as long again as before its last
    re-send (1, 2, 4, 8... times the threshold): a lost message is re-sent within the threshold, while a
    deep backlog is not flooded with duplicates that workers would each have to claim and drop.
    """
    now = utcnow()
    query = sa.select(Audit.id, Audit.state, Audit.created_at, Audit.heartbeat_at, Audit.attempts).where(
        Audit.source == "api",
        sa.or_(
            sa.and_(Audit.state == "running", Audit.heartbeat_at < now - heartbeat_older_than),
            sa.and_(
                Audit.state == "queued",
                sa.func.coalesce(Audit.heartbeat_at, Audit.created_at) < now - queued_older_than,
            ),
        ),
    )
    stale = []
    for row in session.execute(query.order_by(Audit.created_at)):
        audit = StaleAudit(row.id, row.state, row.created_at, row.heartbeat_at, row.attempts)
        resent = audit.heartbeat_at
        if audit.state == "queued" and resent is not None:
            # Re-sent (or requeued) before: wait as long again as it had waited then, up to a cap.
            wait = min(resent - audit.created_at, RESEND_BACKOFF_CAP * queued_older_than)
            if now - resent < wait:
                continue
        stale.append(audit)
    return stale


def requeue_stale(session: Session, audit: Audit, *, seen_heartbeat: datetime | None) -> bool:
    """Put a stale audit back in the queue, unless someone else touched it since it was read (CAS)."""
    now = utcnow()
    was_queued = audit.state == "queued"
    heartbeat_matches = (
        Audit.heartbeat_at.is_(None) if seen_heartbeat is None else Audit.heartbeat_at == seen_heartbeat
    )
    result = session.execute(
        sa.update(Audit)
        .where(Audit.id == audit.id, Audit.state.in_(("queued", "running")), heartbeat_matches)
        .values(state="queued", heartbeat_at=now, worker=None)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) == 0:
        return False
    message = (
        "re-sent: still queued, its task message may have been lost"
        if was_queued
        else "requeued: no heartbeat from its worker"
    )
    record_event(session, audit.id, "queued", at=now, message=message)
    return True


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _is_pg(session: Session) -> bool:
    bind = session.get_bind()
    return bind.dialect.name == "postgresql"
