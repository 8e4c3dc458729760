"""Thin Celery tasks: each takes ids, builds nothing itself, and calls one stage of the pipeline.

Transient errors (database, broker, storage) are retried with exponential backoff; once retries run
out the audit is failed with the reason. Bad input never reaches a retry: the stage records it.
Webhooks are not tasks: every worker process runs a sender thread over the SQL outbox
(:mod:`auditor.service.webhooks`), started with the sweeper.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.signals import worker_ready, worker_shutting_down

from auditor.config import get_settings
from auditor.service import execution
from auditor.service.context import ServiceContext
from auditor.service.dispatch import TASK_EMBED, TASK_SCORE, TASK_START, CeleryDispatcher, Sweeper
from auditor.service.webhooks import WebhookSender
from workers.celery_app import app

log = logging.getLogger(__name__)
_context: ServiceContext | None = None
_sweeper: Sweeper | None = None
_sender: WebhookSender | None = None


def context() -> ServiceContext:
    """One context per worker process, built on first use (after the fork, never before)."""
    global _context
    if _context is None:
        settings = get_settings()
        _context = ServiceContext.from_settings(settings)
        _context.dispatcher = CeleryDispatcher(app)
    return _context


def _run(task: Task, body: Any, audit_id: str, *args: str | int) -> None:
    settings = context().settings
    try:
        body(context(), audit_id, *args)
    except execution.TRANSIENT_ERRORS as exc:
        if task.request.retries >= settings.task_max_retries:
            execution.fail_after_retries(context(), audit_id, exc)
            return
        countdown = min(60.0, 2.0 ** (task.request.retries + 1))
        log.warning("audit %s: transient %s, retry in %.0f s", audit_id, type(exc).__name__, countdown)
        raise task.retry(exc=exc, countdown=countdown) from exc


@app.task(name=TASK_START, bind=True, max_retries=None)
def start(self: Task, audit_id: str) -> None:
    _run(self, execution.start_audit, audit_id)


@app.task(name=TASK_EMBED, bind=True, max_retries=None)
def embed(self: Task, audit_id: str, side: str, index: int = 0, count: int = 1) -> None:
    _run(self, execution.embed_audit_side, audit_id, side, index, count)


@app.task(name=TASK_SCORE, bind=True, max_retries=None)
def score(self: Task, audit_id: str) -> None:
    _run(self, execution.score_audit, audit_id)


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    # Every worker sweeps and sends webhooks; the compare-and-sets in requeue_stale and claim_delivery
    # make concurrent sweepers and senders safe.
    global _sweeper, _sender
    _sweeper = Sweeper(context(), context().settings.sweep_interval_s).start()
    _sender = WebhookSender(context()).start()


@worker_shutting_down.connect
def _stop_sweeper(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()
    if _sender is not None:
        _sender.stop()
