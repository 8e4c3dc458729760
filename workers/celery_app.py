"""The Celery application: Redis broker, queues ``gpu`` (embedding) and ``cpu`` (everything else).

Run a worker with ``auditor worker --queues gpu`` (one process per GPU) or ``--queues cpu``.
Reliability settings, and why:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged only after it ran, so a
  worker killed mid-task leaves its message to be redelivered (tasks are idempotent; see
  :mod:`auditor.service.execution`).
* ``worker_prefetch_multiplier = 1``: a worker holds one task at a time; a 20-minute embedding does
  not sit on messages other workers could run.
* ``visibility_timeout``: Redis redelivers an unacknowledged message after this long; it must exceed
  the longest task, and the SQL heartbeat (not this) is what detects a dead worker quickly.
* No result backend: results live in SQL, never in the broker.
"""

from __future__ import annotations

from celery import Celery

from auditor.config import Settings, get_settings
from auditor.service.dispatch import TASK_QUEUES


def make_celery(settings: Settings) -> Celery:
    app = Celery(
        "auditor", broker=settings.broker_url or "redis://127.0.0.1:6379/0", include=["workers.tasks"]
    )
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        task_default_queue="cpu",
        task_routes={name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # No task events by default: three Redis publishes per task that nobody reads unless Flower
        # runs, and Flower switches them on in the workers itself (remote control, its enable_events
        # option, on by default). No "task-sent" event from the API either: a second publish per submit.
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


app = make_celery(get_settings())
