"""Webhook senders: take due deliveries from the SQL outbox, POST them, record every attempt.

Every process that executes work runs one :class:`WebhookSender` (each Celery worker, beside its
sweeper; the embedded ``auditor serve``): a daemon thread that polls the outbox every
``AUDITOR_WEBHOOK_POLL_S`` and runs up to ``AUDITOR_WEBHOOK_CONCURRENCY`` attempts at once on a small
thread pool. Not Celery tasks: SQL is the queue of record (the outbox row is written with the audit's
result), so a broker outage or a lost message cannot lose a delivery, and a delivery never waits behind
a long scoring task on the ``cpu`` queue.

One attempt (:func:`attempt`): claim (compare-and-set, with a lease of ``3 x timeout + 5 s``), check
the URL again and resolve it (refused addresses fail the delivery at once: ``host_not_allowed``), POST
to the vetted address (TLS still verified against the host name; no proxy, no redirects; the timeout
applies to connecting, sending and waiting for the answer's headers), then record the outcome. A 2xx
answer delivers; anything else is retried after ``AUDITOR_WEBHOOK_BACKOFF_S x 4^(n-1)`` (or the
answer's ``Retry-After``, if longer, up to :data:`MAX_RETRY_AFTER_S`) until
``AUDITOR_WEBHOOK_MAX_ATTEMPTS``. A sender killed mid-attempt leaves the delivery pending; once its
lease is over any sender takes it again (at least once: the receiver dedupes on X-Auditor-Delivery).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

import httpx

from auditor import __version__
from auditor.config import Settings
from auditor.datasets.uri import SchemeNotAllowedError
from auditor.db import webhooks as outbox
from auditor.db.base import utcnow
from auditor.errors import HostNotAllowedError, HostNotFoundError, WebhookUrlError
from auditor.service.context import ServiceContext
from auditor.webhooks import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Target,
    check_url,
    host_policy,
    render_body,
    resolve_url,
    signature_header,
)

log = logging.getLogger(__name__)

BACKOFF_FACTOR = 4
LEASE_MARGIN_S = 5.0
# The longest wait a receiver's Retry-After can ask for (longer answers are cut to it).
MAX_RETRY_AFTER_S = 6 * 3600.0
USER_AGENT = f"synthetic-data-auditor/{__version__} (webhooks)"


def lease(settings: Settings) -> timedelta:
    """How long a claimed delivery is left to its sender: the attempt's worst case, and a margin."""
    return timedelta(seconds=3 * settings.webhook_timeout_s + LEASE_MARGIN_S)


def backoff_s(settings: Settings, number: int) -> float:
    """The wait after failed attempt ``number`` (1-based): base, then 4 times longer each time."""
    return float(settings.webhook_backoff_s * BACKOFF_FACTOR ** (number - 1))


class _Failure(Exception):
    """An attempt that failed before an answer came: a machine-readable code and the reason."""

    def __init__(self, code: str, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry = retry


def _post(
    target: Target, address: str, headers: dict[str, str], body: bytes, timeout_s: float
) -> httpx.Response:
    """POST to ``address`` (already vetted) as if to ``target``'s host: Host header and TLS server name
    are the host's, so certificates are verified as usual; there is no second DNS lookup to race."""
    host = f"[{address}]" if ":" in address else address
    extensions = {}
    if target.scheme == "https" and target.host != address:
        extensions["sni_hostname"] = target.host
    with httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False) as client:
        request = client.build_request(
            "POST",
            f"{target.scheme}://{host}:{target.port}{target.target}",
            content=body,
            headers={**headers, "Host": target.host_header},
            extensions=extensions,
        )
        # The answer's body is never read: its status and headers are the outcome.
        response = client.send(request, stream=True)
        response.close()
        return response


def _send(settings: Settings, claim: outbox.Claim) -> httpx.Response:
    body = render_body(claim.payload, settings.public_url)
    try:
        # Again at every attempt: the operator's settings, or the host's DNS, may have changed.
        target = check_url(claim.url, settings.webhook_scheme_set())
        addresses = resolve_url(target, host_policy(settings.webhook_allow_host_list()))
    except HostNotFoundError as exc:
        raise _Failure(exc.code, exc.message) from exc  # DNS may come back
    except (HostNotAllowedError, SchemeNotAllowedError, WebhookUrlError) as exc:
        raise _Failure(exc.code, exc.message, retry=False) from exc
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: claim.event,
        DELIVERY_HEADER: claim.delivery_id,
        ATTEMPT_HEADER: str(claim.number),
        SIGNATURE_HEADER: signature_header(claim.secret, body),
    }
    failure = _Failure("connection_error", "no address to connect to")
    for address in addresses:
        try:
            return _post(target, address, headers, body, settings.webhook_timeout_s)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing was sent: the next address of the host may answer.
            code = "timeout" if isinstance(exc, httpx.ConnectTimeout) else "connection_error"
            failure = _Failure(code, f"connecting to {address}:{target.port}: {exc or type(exc).__name__}")
        except httpx.TimeoutException as exc:
            raise _Failure(
                "timeout", f"no answer within {settings.webhook_timeout_s:g} s ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise _Failure("connection_error", f"{type(exc).__name__}: {exc}") from exc
    raise failure


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    return min(float(value), MAX_RETRY_AFTER_S) if value.isdigit() else None


def attempt(context: ServiceContext, claim: outbox.Claim) -> outbox.Outcome:
    """One attempt of a claimed delivery, its outcome recorded (see the module docstring)."""
    settings = context.settings
    start = time.monotonic()
    retry_floor = 0.0
    status: int | None
    code: str | None
    error: str | None
    try:
        response = _send(settings, claim)
    except _Failure as failure:
        status, code, error, retryable = None, failure.code, failure.message, failure.retry
    except Exception as exc:  # a bug must not kill the sender; the attempt is recorded as failed
        log.exception("webhook delivery %s: attempt %d failed", claim.delivery_id, claim.number)
        status, code, error, retryable = None, "internal_error", f"{type(exc).__name__}: {exc}", True
    else:
        status = response.status_code
        if 200 <= status < 300:
            code = error = None
        else:
            code = "http_status"
            error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
            retry_floor = _retry_after(response) or 0.0
        retryable = True
    duration = time.monotonic() - start
    delivered = status is not None and 200 <= status < 300
    now = utcnow()
    retry_at = None
    if not delivered and retryable and claim.number < settings.webhook_max_attempts:
        retry_at = now + timedelta(seconds=max(backoff_s(settings, claim.number), retry_floor))
    outcome = outbox.Outcome(
        delivered=delivered,
        duration_s=duration,
        status_code=status,
        error_code=code,
        error=error,
        retry_at=retry_at,
    )
    with context.session() as session:
        outbox.finish_attempt(session, claim, outcome, now=now)
    if not delivered:
        log.warning(
            "webhook delivery %s (%s) attempt %d: %s%s",
            claim.delivery_id,
            claim.event,
            claim.number,
            error,
            f"; next attempt at {retry_at.isoformat(timespec='seconds')}" if retry_at else "; giving up",
        )
    return outcome


def claim_due(context: ServiceContext, limit: int) -> list[outbox.Claim]:
    """Claim up to ``limit`` due deliveries (each claim its own short transaction)."""
    if limit <= 0:
        return []
    with context.session() as session:
        due = outbox.due_deliveries(session, limit=limit)
    claims: list[outbox.Claim] = []
    for delivery in due:
        with context.session() as session:
            claim = outbox.claim_delivery(
                session, delivery, sender=context.name, lease=lease(context.settings)
            )
        if claim is not None:
            claims.append(claim)
    return claims


def send_due(context: ServiceContext, *, limit: int = 100) -> list[outbox.Outcome]:
    """Claim and attempt the due deliveries here, one after the other (tests, one-off flushes)."""
    return [attempt(context, claim) for claim in claim_due(context, limit)]


class WebhookSender:
    """Polls the outbox from a daemon thread and runs attempts on a pool (see the module docstring)."""

    def __init__(
        self, context: ServiceContext, *, poll_s: float | None = None, concurrency: int | None = None
    ):
        self.context = context
        self.poll_s = poll_s if poll_s is not None else context.settings.webhook_poll_s
        self.concurrency = concurrency or context.settings.webhook_concurrency
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="auditor-webhook")
        self._in_flight: set[Future[outbox.Outcome]] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="auditor-webhook-sender", daemon=True)

    def start(self) -> WebhookSender:
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop polling and wait for the attempts in flight (a pending delivery is simply left due)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=self.poll_s + 1)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _done(self, future: Future[outbox.Outcome]) -> None:
        with self._lock:
            self._in_flight.discard(future)
        self._wake.set()  # a free slot: more may be due

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    free = self.concurrency - len(self._in_flight)
                for claim in claim_due(self.context, free):
                    future = self._pool.submit(self._attempt, claim)
                    with self._lock:
                        self._in_flight.add(future)
                    future.add_done_callback(self._done)
            except Exception:
                log.warning("looking for due webhook deliveries failed", exc_info=True)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _attempt(self, claim: outbox.Claim) -> outbox.Outcome:
        try:
            return attempt(self.context, claim)
        except Exception:
            # Recording failed (the database went away): the lease runs out and the delivery is retried.
            log.warning(
                "webhook delivery %s: recording attempt %d failed",
                claim.delivery_id,
                claim.number,
                exc_info=True,
            )
            raise
