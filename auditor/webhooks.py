"""Webhooks, the protocol: events, the body, the signature and the URL rules (no I/O but DNS).

A project subscribes a URL to some of :data:`EVENTS`; when an audit of the project ends, each matching
subscription gets one delivery, a ``POST`` of a JSON body (:func:`build_payload`, :func:`render_body`)
with these headers::

    Content-Type: application/json
    X-Auditor-Event: gate.failed
    X-Auditor-Delivery: 5f0c...e1        (the delivery's id: the same on every retry; dedupe on it)
    X-Auditor-Attempt: 2
    X-Auditor-Signature: t=1767225600,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

The signature covers the timestamp and the exact body bytes, so a receiver verifies both before
parsing (:func:`verify_signature`; the README has the same check in a dozen lines to copy) and refuses
an old timestamp (replays). Deliveries are at least once: a retry after a timeout, or after a sender
died mid-attempt, sends the same delivery id and body again.

URL rules (:func:`check_url`, :func:`resolve_url`): those of remote datasets
(:mod:`auditor.datasets.netguard`) with settings of their own: ``https`` only unless the operator lists
``http`` in ``AUDITOR_WEBHOOK_SCHEMES``; the host must resolve, and to public addresses only unless
``AUDITOR_WEBHOOK_ALLOW_HOSTS`` allows it; checked when the subscription is made and again at every
attempt (DNS may have changed), where the connection goes to the address just vetted. Redirects are not
followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from auditor.datasets.netguard import HostPolicy, lookup, parse_address
from auditor.datasets.uri import SchemeNotAllowedError
from auditor.errors import HostNotAllowedError, HostNotFoundError, WebhookUrlError

EVENT_AUDIT_SUCCEEDED = "audit.succeeded"
EVENT_AUDIT_FAILED = "audit.failed"
EVENT_GATE_FAILED = "gate.failed"
EVENTS = (EVENT_AUDIT_SUCCEEDED, EVENT_AUDIT_FAILED, EVENT_GATE_FAILED)

SIGNATURE_HEADER = "X-Auditor-Signature"
EVENT_HEADER = "X-Auditor-Event"
DELIVERY_HEADER = "X-Auditor-Delivery"
ATTEMPT_HEADER = "X-Auditor-Attempt"
# How old a signed timestamp :func:`verify_signature` accepts by default (seconds).
SIGNATURE_TOLERANCE_S = 300

URL_MAX = 2048  # the column: auditor.db.models.WEBHOOK_URL_MAX
SECRET_MIN, SECRET_MAX = 16, 256
SECRET_PATTERN = r"^[!-~]+$"  # visible ASCII: what a header or an environment variable holds unchanged
ALLOW_SETTING = "AUDITOR_WEBHOOK_ALLOW_HOSTS"
SCHEMES_SETTING = "AUDITOR_WEBHOOK_SCHEMES"
# The largest body sent. What can grow (failed rules, an error message) is cut to fit well below it.
MAX_BODY_BYTES = 16 * 1024
MAX_FAILED_RULES = 20
_TEXT_MAX = 1000

# An http(s) URL the service can parse and send to: a DNS name or IPv4 address (IPv6 receivers by name),
# an optional port in range, a path and query without a fragment; visible ASCII only (IDN hosts in
# punycode, other characters percent-encoded). Every string it matches is accepted by urlsplit, so what
# the API refuses beyond it (scheme, DNS, SSRF, quota) depends on the deployment, not on the syntax.
# No look-ahead: every regex engine (pydantic's, ECMA's, Python's) reads it the same.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
URL_PATTERN = rf'^[Hh][Tt][Tt][Pp][Ss]?://{_LABEL}(?:\.{_LABEL})*\.?{_PORT}(?:[/?][!"$-~]*)?$'
_URL = re.compile(URL_PATTERN)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def new_secret() -> str:
    """A signing secret for a subscription made without one (256 random bits)."""
    return f"whsec_{secrets.token_urlsafe(32)}"


# --- signatures -----------------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Auditor-Signature`` value: ``t=<unix seconds>,v1=<hex>``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (``X-Auditor-Signature``) signs ``body`` with ``secret`` within ``tolerance_s``.

    A receiver's check: constant-time comparison, any ``v1`` entry may match, malformed headers are
    simply not valid.
    """
    try:
        fields = [part.strip().split("=", 1) for part in header.split(",")]
        timestamps = [int(value) for key, value in fields if key == "t"]
        signatures = [value for key, value in fields if key == "v1"]
    except ValueError:
        return False
    if len(timestamps) != 1 or not signatures:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamps[0]) > tolerance_s:
        return False
    expected = sign(secret, timestamps[0], body)
    return any(hmac.compare_digest(expected, signature) for signature in signatures)


# --- events and bodies ----------------------------------------------------------------------------------


def events_for(state: str, passed: bool | None) -> list[str]:
    """The events an audit that ended in ``state`` (with verdict ``passed``) emits."""
    if state == "succeeded":
        return [EVENT_AUDIT_SUCCEEDED, *([EVENT_GATE_FAILED] if passed is False else [])]
    if state == "failed":
        return [EVENT_AUDIT_FAILED]
    return []


def _cut(text: object, limit: int = _TEXT_MAX) -> str | None:
    if text is None:
        return None
    value = str(text)
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def verdict_summary(document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The verdict as a receiver needs it: passed, counts, and the rules that failed (at most 20)."""
    verdict = (document or {}).get("verdict")
    if not isinstance(verdict, Mapping):
        return None
    rules = [rule for rule in verdict.get("rules") or [] if isinstance(rule, Mapping)]
    failed = [rule for rule in rules if rule.get("outcome") == "fail"]
    keys = ("metric", "on", "bound", "threshold", "observed", "tier", "baseline")
    return {
        "passed": verdict.get("passed"),
        "policy": _cut(verdict.get("policy"), 200),
        "failed": verdict.get("failed", len(failed)),
        "warned": verdict.get("warned", 0),
        "failed_rules": [
            {
                **{key: rule[key] for key in keys if key in rule and not isinstance(rule[key], Mapping)},
                "message": _cut(rule.get("message"), 300),
            }
            for rule in failed[:MAX_FAILED_RULES]
        ],
    }


def build_payload(
    *,
    delivery_id: str,
    event: str,
    project: str,
    audit_id: str,
    state: str,
    passed: bool | None,
    generation: int | None,
    tags: list[str],
    created_at: datetime,
    finished_at: datetime | None,
    duration_s: float | None,
    error_code: str | None,
    error_message: str | None,
    document: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The body of one delivery, with links as paths (:func:`render_body` makes them absolute)."""
    metrics = (document or {}).get("metrics")
    verdict = verdict_summary(document)
    links = {"audit": f"/v1/audits/{audit_id}"}
    if state == "succeeded":
        links["report"] = f"/v1/audits/{audit_id}/report"
    payload = {
        "id": delivery_id,
        "event": event,
        "project": project,
        "audit": {
            "id": audit_id,
            "state": state,
            "passed": passed,
            "generation": generation,
            "tags": [_cut(tag, 200) for tag in tags[:50]],
            "created_at": _iso(created_at),
            "finished_at": _iso(finished_at),
            "duration_s": duration_s,
            "error": {"code": error_code, "message": _cut(error_message)} if error_code else None,
            "verdict": verdict,
            "metrics": {
                str(name): entry.get("value")
                for name, entry in (metrics.items() if isinstance(metrics, Mapping) else ())
                if isinstance(entry, Mapping)
            },
        },
        "links": links,
    }
    rules: list[Any] = verdict["failed_rules"] if verdict else []
    while rules and len(render_body(payload, None)) > MAX_BODY_BYTES:
        del rules[len(rules) // 2 :]  # halve the rules until it fits (the counts stay exact)
    return payload


def render_body(payload: Mapping[str, Any], public_url: str | None) -> bytes:
    """The exact bytes sent (and signed): compact JSON, keys sorted, links under ``public_url``."""
    base = (public_url or "").rstrip("/")
    links = {name: f"{base}{path}" for name, path in (payload.get("links") or {}).items()}
    body = {**payload, "links": links}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- URL rules ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A checked webhook URL: where to connect (``host``, ``port``) and what to ask for."""

    url: str
    scheme: str
    host: str  # lower-case, no trailing dot
    port: int
    target: str  # path and query, at least "/"

    @property
    def host_header(self) -> str:
        default = _DEFAULT_PORTS[self.scheme]
        return self.host if self.port == default else f"{self.host}:{self.port}"


def check_url(url: str, schemes: frozenset[str]) -> Target:
    """The URL's syntax and scheme (no DNS): :class:`WebhookUrlError` / ``scheme_not_allowed``."""
    if len(url) > URL_MAX or not _URL.match(url):
        raise WebhookUrlError(
            f"{_cut(url, 200)!r} is not a webhook URL: http(s)://host[:port][/path][?query], at most "
            f"{URL_MAX} characters, visible ASCII, no user name or fragment",
            details={"url": _cut(url, 200)},
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        allowed = ", ".join(sorted(schemes)) or "none"
        raise SchemeNotAllowedError(
            f"{url}: webhooks use {allowed} here ({scheme} needs the operator's {SCHEMES_SETTING})",
            details={"url": url, "scheme": scheme, "setting": SCHEMES_SETTING},
        )
    host = (parts.hostname or "").rstrip(".")
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return Target(url=url, scheme=scheme, host=host, port=parts.port or _DEFAULT_PORTS[scheme], target=target)


def _refused(target: Target, reason: str) -> HostNotAllowedError:
    return HostNotAllowedError(
        f"{target.url}: host {target.host!r} is or resolves to a {reason} address; webhooks are sent to "
        f"public addresses only (an operator can allow internal hosts and networks with {ALLOW_SETTING})",
        details={"url": target.url, "host": target.host, "reason": reason, "setting": ALLOW_SETTING},
    )


def resolve_url(target: Target, policy: HostPolicy) -> list[str]:
    """The addresses to connect to, every one vetted: one lookup, and one internal address refuses the
    whole host (``host_not_allowed``, as for datasets); a host that does not resolve is
    ``host_not_found``."""
    try:
        infos = lookup(target.host, target.port)
    except (OSError, UnicodeError) as exc:
        raise HostNotFoundError(
            f"{target.url}: cannot resolve host {target.host!r} ({exc})",
            details={"url": target.url, "host": target.host},
        ) from exc
    addresses: list[str] = []
    for *_, text in infos:
        address = parse_address(text)
        reason = "unparseable" if address is None else policy.refusal(target.host, address)
        if reason is not None:
            raise _refused(target, reason)
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise HostNotFoundError(
            f"{target.url}: host {target.host!r} has no address", details={"url": target.url}
        )
    return addresses


def host_policy(allow_hosts: list[str]) -> HostPolicy:
    return HostPolicy.parse(allow_hosts)


__all__ = [
    "DELIVERY_HEADER",
    "EVENTS",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "build_payload",
    "check_url",
    "events_for",
    "render_body",
    "resolve_url",
    "sign",
    "signature_header",
    "verify_signature",
]
