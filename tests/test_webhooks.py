"""The webhook protocol (auditor.webhooks): signatures (and the README's verification snippet), bodies and
their bounds, events, the URL syntax and the SSRF rules at their own layer."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from helpers.webhooks import readme_verify
from pydantic import ValidationError

from auditor import webhooks
from auditor.api.schemas import WebhookCreate
from auditor.datasets.uri import SchemeNotAllowedError
from auditor.errors import HostNotAllowedError, HostNotFoundError, WebhookUrlError

SECRET = "whsec_test-secret-0123456789"
BODY = b'{"event":"gate.failed","id":"abc"}'


def test_the_readme_snippet_and_verify_signature_accept_a_signed_body_and_refuse_tampering() -> None:
    verify = readme_verify()
    header = webhooks.signature_header(SECRET, BODY)
    for check in (verify, webhooks.verify_signature):
        assert check(SECRET, header, BODY)
        assert not check(SECRET, header, BODY + b" ")  # the body changed
        assert not check("another-secret-0123456789", header, BODY)
        assert not check(SECRET, header.replace("t=", "t=1"), BODY)  # the timestamp changed
        assert not check(SECRET, "v1=deadbeef", BODY)  # malformed: never an exception
        assert not check(SECRET, "", BODY)


def test_old_timestamps_are_refused() -> None:
    old = webhooks.signature_header(SECRET, BODY, timestamp=1_000_000_000)
    assert not readme_verify()(SECRET, old, BODY)
    assert not webhooks.verify_signature(SECRET, old, BODY)
    assert webhooks.verify_signature(SECRET, old, BODY, now=1_000_000_100)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert webhooks.signature_header(SECRET, BODY, timestamp=1_700_000_000) == f"t=1700000000,v1={expected}"


@pytest.mark.parametrize(
    ("state", "passed", "events"),
    [
        ("succeeded", True, ["audit.succeeded"]),
        ("succeeded", None, ["audit.succeeded"]),  # no policy
        ("succeeded", False, ["audit.succeeded", "gate.failed"]),
        ("failed", None, ["audit.failed"]),
        ("cancelled", None, []),
    ],
)
def test_events_of_an_ending_audit(state: str, passed: bool | None, events: list[str]) -> None:
    assert webhooks.events_for(state, passed) == events


def payload(document: dict[str, Any] | None, **changes: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "delivery_id": "d" * 32,
        "event": "gate.failed",
        "project": "faces",
        "audit_id": "a" * 32,
        "state": "succeeded",
        "passed": False,
        "generation": 3,
        "tags": ["nightly"],
        "created_at": datetime(2027, 1, 1, tzinfo=timezone.utc),
        "finished_at": datetime(2027, 1, 1, 0, 1, tzinfo=timezone.utc),
        "duration_s": 60.0,
        "error_code": None,
        "error_message": None,
        "document": document,
    }
    return webhooks.build_payload(**{**arguments, **changes})


def failing_rule(index: int) -> dict[str, Any]:
    return {
        "metric": "fid",
        "on": "value",
        "bound": "max",
        "threshold": 1.0,
        "observed": 2.0 + index,
        "tier": "fail",
        "outcome": "fail",
        "message": "x" * 5000,
    }


def test_the_body_summarises_the_verdict_and_links_under_the_public_url() -> None:
    document = {
        "metrics": {"fid": {"value": 2.0, "ci_low": 1.0}},
        "verdict": {
            "passed": False,
            "policy": "release",
            "failed": 1,
            "warned": 1,
            "rules": [
                failing_rule(0),
                {"metric": "recall", "outcome": "warn"},
                {"metric": "x", "outcome": "pass"},
            ],
        },
    }
    body = json.loads(webhooks.render_body(payload(document), "https://auditor.example/"))
    assert body["event"] == "gate.failed" and body["id"] == "d" * 32 and body["project"] == "faces"
    assert body["audit"]["metrics"] == {"fid": 2.0}
    verdict = body["audit"]["verdict"]
    assert (verdict["passed"], verdict["policy"], verdict["failed"], verdict["warned"]) == (
        False,
        "release",
        1,
        1,
    )
    assert [rule["metric"] for rule in verdict["failed_rules"]] == ["fid"]
    assert len(verdict["failed_rules"][0]["message"]) == 300  # cut
    assert body["links"] == {
        "audit": f"https://auditor.example/v1/audits/{'a' * 32}",
        "report": f"https://auditor.example/v1/audits/{'a' * 32}/report",
    }
    # Without a public URL the links are paths; the bytes are deterministic (what is signed).
    first = webhooks.render_body(payload(document), None)
    assert first == webhooks.render_body(payload(document), None)
    assert json.loads(first)["links"]["audit"] == f"/v1/audits/{'a' * 32}"


def test_the_body_is_bounded() -> None:
    many = {"verdict": {"passed": False, "failed": 500, "rules": [failing_rule(i) for i in range(500)]}}
    huge_error = payload(
        None, state="failed", passed=None, error_code="internal_error", error_message="e" * 10**6
    )
    for built in (payload(many), huge_error):
        assert len(webhooks.render_body(built, "https://auditor.example")) <= webhooks.MAX_BODY_BYTES
    verdict = payload(many)["audit"]["verdict"]
    assert verdict["failed"] == 500 and 0 < len(verdict["failed_rules"]) <= webhooks.MAX_FAILED_RULES
    assert huge_error["links"] == {"audit": f"/v1/audits/{'a' * 32}"}  # no report for a failed audit


ACCEPTED = [
    "https://hooks.example.com/auditor?token=abc",
    "http://127.0.0.1:8080/x",
    "HTTPS://EXAMPLE.COM.",
    "https://h:65535",
    "https://xn--bcher-kva.example/p%20q",
]
REFUSED = [
    "ftp://example.com/",
    "https://user:pass@example.com/",
    "https://example.com/#fragment",
    "https://example.com:0/",
    "https://example.com:65536/",
    "https://[::1]/",  # IPv6 receivers by name
    "https://a..b/",
    "https://exa mple.com/",
    "https://bücher.example/",
    "https://example.com/\x00",
    "https://" + "a" * 64 + ".example/",  # a label over 63 characters
    "https://example.com/" + "a" * 2048,
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_urls_the_schema_accepts_parse(url: str) -> None:
    assert WebhookCreate(url=url).url == url
    target = webhooks.check_url(url, frozenset({"http", "https"}))
    assert target.target.startswith("/") and 0 < target.port < 65536


@pytest.mark.parametrize("url", REFUSED)
def test_urls_the_schema_refuses_are_refused_by_check_url_too(url: str) -> None:
    with pytest.raises(ValidationError):
        WebhookCreate(url=url)
    with pytest.raises((WebhookUrlError, SchemeNotAllowedError)):
        webhooks.check_url(url, frozenset({"http", "https"}))


def test_http_only_where_the_operator_allows_it() -> None:
    with pytest.raises(SchemeNotAllowedError, match="AUDITOR_WEBHOOK_SCHEMES"):
        webhooks.check_url("http://example.com/", frozenset({"https"}))
    assert webhooks.check_url("http://example.com/", frozenset({"https", "http"})).port == 80


def test_events_are_validated_and_deduplicated() -> None:
    assert WebhookCreate(url=ACCEPTED[0]).events == list(webhooks.EVENTS)
    assert WebhookCreate(url=ACCEPTED[0], events=["gate.failed", "gate.failed"]).events == ["gate.failed"]
    with pytest.raises(ValidationError):
        WebhookCreate(url=ACCEPTED[0], events=["audit.started"])
    with pytest.raises(ValidationError):
        WebhookCreate(url=ACCEPTED[0], events=[])
    for secret in ("short", "x" * 257, "has space inside 0123"):
        with pytest.raises(ValidationError):
            WebhookCreate(url=ACCEPTED[0], secret=secret)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://10.1.2.3/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://localhost/hook", "loopback"),
        ("https://127.0.0.1:8443/", "loopback"),
        ("https://2130706433/", "loopback"),  # 127.0.0.1 spelled as one number
        ("https://100.64.0.1/", "private"),
        ("https://0.0.0.0/", "unspecified"),
    ],
)
def test_internal_addresses_are_refused_unless_allowed(url: str, reason: str) -> None:
    target = webhooks.check_url(url, frozenset({"https"}))
    with pytest.raises(HostNotAllowedError, match="AUDITOR_WEBHOOK_ALLOW_HOSTS") as refused:
        webhooks.resolve_url(target, webhooks.host_policy([]))
    assert refused.value.details["reason"] == reason
    allowed = webhooks.host_policy(
        ["localhost", "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0"]
    )
    assert webhooks.resolve_url(target, allowed)


def test_an_unresolvable_host_is_host_not_found() -> None:
    target = webhooks.check_url("https://no-such-host.invalid/", frozenset({"https"}))
    with pytest.raises(HostNotFoundError):
        webhooks.resolve_url(target, webhooks.host_policy([]))


def test_one_internal_address_refuses_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    records = [(2, 1, 6, "93.184.216.34"), (2, 1, 6, "10.0.0.7")]
    monkeypatch.setattr(webhooks, "lookup", lambda host, port: records)
    target = webhooks.check_url("https://mixed.example/", frozenset({"https"}))
    with pytest.raises(HostNotAllowedError):
        webhooks.resolve_url(target, webhooks.host_policy([]))
    records.pop()
    assert webhooks.resolve_url(target, webhooks.host_policy([])) == ["93.184.216.34"]


def test_the_allow_list_setting_is_validated_with_its_own_name() -> None:
    from auditor.config import Settings

    with pytest.raises(ValidationError, match="AUDITOR_WEBHOOK_ALLOW_HOSTS"):
        Settings(webhook_allow_hosts="10.0.0.0/33")
    with pytest.raises(ValidationError, match="AUDITOR_WEBHOOK_SCHEMES"):
        Settings(webhook_schemes="https,ftp")
