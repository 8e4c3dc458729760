"""Dispatchers: where queued work goes. Celery queues in a deployment, a thread in the embedded mode.

The embedded mode (``auditor serve`` with no ``AUDITOR_BROKER_URL``) runs the very same task bodies
(:mod:`auditor.service.execution`) on one background thread in the API process, so a newcomer gets a
working API with one command and the behaviour matches the deployment, minus the parallelism.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from auditor.errors import ServiceUnavailableError
from auditor.service import execution
from auditor.service.context import ServiceContext

log = logging.getLogger(__name__)

# Task names and their queues: embedding wants a GPU, everything else a CPU.
TASK_START = "auditor.start"
TASK_EMBED = "auditor.embed"
TASK_SCORE = "auditor.score"
TASK_QUEUES = {TASK_START: "cpu", TASK_EMBED: "gpu", TASK_SCORE: "cpu"}


class CeleryDispatcher:
    def __init__(self, celery_app: Any) -> None:
        self.app = celery_app

    def _send(self, name: str, *args: str | int) -> None:
        try:
            self.app.send_task(name, args=list(args), queue=TASK_QUEUES[name])
        except Exception as exc:  # kombu raises its own OperationalError family
            raise ServiceUnavailableError(f"cannot reach the broker to queue {name}: {exc}") from exc

    def enqueue_start(self, audit_id: str) -> None:
        self._send(TASK_START, audit_id)

    def enqueue_embed(self, audit_id: str, side: str, index: int = 0, count: int = 1) -> None:
        self._send(TASK_EMBED, audit_id, side, index, count)

    def enqueue_score(self, audit_id: str) -> None:
        self._send(TASK_SCORE, audit_id)

    def ping(self) -> None:
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:
            raise ServiceUnavailableError(f"broker unreachable: {exc}") from exc


class InProcessDispatcher:
    """One daemon thread executing queued stages in order (the embedded default)."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self._queue: queue.Queue[tuple[Callable[..., None], tuple[str | int, ...]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="auditor-inprocess-worker", daemon=True)
        self._thread.start()

    def enqueue_start(self, audit_id: str) -> None:
        self._queue.put((execution.start_audit, (audit_id,)))

    def enqueue_embed(self, audit_id: str, side: str, index: int = 0, count: int = 1) -> None:
        self._queue.put((execution.embed_audit_side, (audit_id, side, index, count)))

    def enqueue_score(self, audit_id: str) -> None:
        self._queue.put((execution.score_audit, (audit_id,)))

    def ping(self) -> None:
        if not self._thread.is_alive():
            raise ServiceUnavailableError("the in-process worker thread has stopped")

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            task, args = item
            try:
                task(self.context, *args)
            except Exception:
                # Stage errors are recorded on the audit; a transient one leaves it to the sweeper.
                log.exception("in-process task %s%r failed", task.__name__, args)


class Sweeper:
    """Runs :func:`execution.sweep_stale` every ``interval_s`` on a daemon thread."""

    def __init__(self, context: ServiceContext, interval_s: float) -> None:
        self.context = context
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auditor-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 1)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                requeued = execution.sweep_stale(
                    self.context, max_attempts=self.context.settings.task_max_retries
                )
                if requeued:
                    log.warning("requeued stuck audits: %s", ", ".join(requeued))
            except Exception:
                log.warning("sweep for stuck audits failed", exc_info=True)
