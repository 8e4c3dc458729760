"""Prometheus metrics: request counts and latencies, queue depth, audits by state, audit durations,
webhook deliveries by state (a growing ``pending`` is a receiver down, or no sender running).

Request metrics are observed by a middleware in this process. Queue depth and audit figures are read
at scrape time (Redis list lengths, one SQL aggregate), so every API replica reports the same
cluster-wide values and workers need no metrics endpoint of their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auditor.db.models import Audit, WebhookDelivery
from auditor.service.context import ServiceContext

log = logging.getLogger(__name__)
QUEUES = ("gpu", "cpu")


class ServiceCollector(Collector):
    def __init__(self, context: ServiceContext) -> None:
        self.context = context

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("auditor_queue_depth", "Tasks waiting in each queue.", labels=["queue"])
        for queue, length in self._queue_lengths().items():
            depth.add_metric([queue], length)
        yield depth
        states = GaugeMetricFamily("auditor_audits", "Audits by state.", labels=["state"])
        failures = GaugeMetricFamily(
            "auditor_audit_failures", "Failed audits by error code.", labels=["code"]
        )
        durations = GaugeMetricFamily(
            "auditor_audit_duration_seconds_avg", "Mean duration of succeeded audits.", labels=[]
        )
        deliveries = GaugeMetricFamily(
            "auditor_webhook_deliveries", "Webhook deliveries by state.", labels=["state"]
        )
        try:
            with self.context.session() as session:
                for state, count in session.execute(
                    sa.select(Audit.state, sa.func.count()).group_by(Audit.state)
                ):
                    states.add_metric([state], count)
                for code, count in session.execute(
                    sa.select(Audit.error_code, sa.func.count())
                    .where(Audit.state == "failed")
                    .group_by(Audit.error_code)
                ):
                    failures.add_metric([code or "unknown"], count)
                mean = session.scalar(
                    sa.select(sa.func.avg(Audit.duration_s)).where(Audit.state == "succeeded")
                )
                durations.add_metric([], float(mean or 0.0))
                for state, count in session.execute(
                    sa.select(WebhookDelivery.state, sa.func.count()).group_by(WebhookDelivery.state)
                ):
                    deliveries.add_metric([state], count)
        except Exception:  # a scrape must not fail because the database is briefly away
            log.warning("metrics: database unavailable", exc_info=True)
        yield states
        yield failures
        yield durations
        yield deliveries

    def _queue_lengths(self) -> dict[str, float]:
        dispatcher = self.context.dispatcher
        pending = getattr(dispatcher, "pending", None)
        if callable(pending):
            return {"inprocess": float(pending())}
        app = getattr(dispatcher, "app", None)
        if app is None:
            return {}
        try:
            with app.connection_for_read() as connection:
                client = connection.default_channel.client
                return {queue: float(client.llen(queue)) for queue in QUEUES}
        except Exception:
            log.warning("metrics: broker unavailable", exc_info=True)
            return {}


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "auditor_http_requests", "HTTP requests.", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "auditor_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


class RequestMetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status (pure ASGI)."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The route template (the router records it in the shared scope), not the raw path: ids
            # must not explode the label set.
            name = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], name, str(status)).inc()
            self.metrics.latency.labels(scope["method"], name).observe(time.perf_counter() - start)
