"""Webhooks end to end in embedded mode (SQLite and PostgreSQL): the API on uvicorn, audits on the
in-process worker, the webhook sender thread, and a real receiver on loopback (allowed through
AUDITOR_WEBHOOK_ALLOW_HOSTS, as an operator would allow an internal host). Signatures are checked with
the README's snippet; retries, attempt logs, gate.failed, audit.failed, the SSRF refusals (at subscription
and at delivery), bounds, project isolation and the CLI verbs."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from helpers.http_servers import WebhookReceiver
from helpers.services import ApiServer, wait_for, write_embeddings
from helpers.webhooks import readme_verify
from typer.testing import CliRunner

from auditor import webhooks
from auditor.client import ApiError, AuditorClient
from auditor.config import Settings
from auditor.db import access
from auditor.db.models import Webhook
from auditor.service.context import ServiceContext
from auditor.service.dispatch import InProcessDispatcher
from auditor.service.webhooks import WebhookSender

QUICK = {"metrics": ["fid", "precision"], "bootstrap": 5, "spectral_bootstrap": 0}


@dataclass
class Hooked:
    context: ServiceContext
    url: str
    admin_key: str
    data: dict[str, str]
    home: Path

    def client(self, key: str | None = None) -> AuditorClient:
        return AuditorClient(self.url, api_key=key or self.admin_key)

    def project_key(self, project: str) -> str:
        with self.context.session() as session:
            return access.create_api_key(session, name="test", project=project).secret

    def audit(
        self, project: str = "p", *, data: dict[str, str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        data = data or self.data
        body = {"project": project, "real": {"uri": data["real"]}, "synthetic": {"uri": data["synthetic"]}}
        with self.client() as client:
            audit = client.submit({**body, "params": QUICK, **extra})
            return client.wait(audit["id"], timeout=120, poll_s=0.1)


@pytest.fixture
def hooked(migrated_database_url: str, tmp_path: Path) -> Iterator[Hooked]:
    from auditor.api import create_app

    settings = Settings(
        database_url=migrated_database_url,
        home=tmp_path / "home",
        data_roots=str(tmp_path),
        webhook_schemes="https,http",
        webhook_allow_hosts="127.0.0.1",  # the receiver: allowed as an operator allows an internal host
        webhook_backoff_s=0.2,
        webhook_poll_s=0.05,
        webhook_timeout_s=5,
        max_webhooks_per_project=3,
        public_url="https://auditor.example",
    )
    context = ServiceContext.from_settings(settings, migrate=False)
    dispatcher = InProcessDispatcher(context)
    context.dispatcher = dispatcher
    sender = WebhookSender(context).start()
    with context.session() as session:
        admin = access.create_api_key(session, name="admin", is_admin=True).secret
    data = write_embeddings(tmp_path / "data", n=150, d=8)
    try:
        with ApiServer(create_app(context)) as server:
            yield Hooked(context, server.url, admin, data, tmp_path)
    finally:
        sender.stop()
        dispatcher.close()
        context.engine.dispose()


def settled(hooked: Hooked, project: str, webhook_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The webhook's deliveries once ``count`` of them are no longer pending."""

    def done() -> list[dict[str, Any]] | None:
        with hooked.client() as client:
            rows = client.webhook_deliveries(project, webhook_id)
        finished = [row for row in rows if row["state"] != "pending"]
        return rows if len(finished) >= count else None

    result: list[dict[str, Any]] = wait_for(done, 30, f"{count} settled deliveries")
    return result


def test_a_delivery_is_signed_and_verifies_with_the_readme_snippet(
    hooked: Hooked, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with WebhookReceiver([200]) as receiver, hooked.client() as client:
        created = client.add_webhook("p", f"{receiver.url}/hooks/auditor?source=test")
        secret = created["secret"]
        assert secret.startswith("whsec_") and created["events"] == list(webhooks.EVENTS)
        audit = hooked.audit(tags=["nightly"])
        [delivery] = settled(hooked, "p", created["id"])
        # The secret is answered once: never listed, never read back, never logged.
        assert "secret" not in client.webhooks("p")[0]
        assert "secret" not in client._json("GET", f"/v1/projects/p/webhooks/{created['id']}")
    [received] = receiver.received
    assert received.path == "/hooks/auditor?source=test"
    assert received.headers["content-type"] == "application/json"
    assert received.headers["x-auditor-event"] == "audit.succeeded"
    assert received.headers["x-auditor-delivery"] == delivery["id"]
    assert received.headers["x-auditor-attempt"] == "1"
    verify = readme_verify()
    assert verify(secret, received.headers["x-auditor-signature"], received.body)
    assert not verify(secret, received.headers["x-auditor-signature"], received.body.replace(b"p", b"q", 1))
    assert webhooks.verify_signature(secret, received.headers["x-auditor-signature"], received.body)
    body = json.loads(received.body)
    assert body["id"] == delivery["id"] and body["event"] == "audit.succeeded" and body["project"] == "p"
    assert body["audit"]["id"] == audit["id"] and body["audit"]["state"] == "succeeded"
    assert body["audit"]["passed"] is None and body["audit"]["tags"] == ["nightly"]
    assert set(body["audit"]["metrics"]) == {"fid", "precision"}
    assert body["links"]["report"] == f"https://auditor.example/v1/audits/{audit['id']}/report"
    assert delivery["state"] == "delivered" and delivery["audit_id"] == audit["id"]
    assert [a["status_code"] for a in delivery["attempts"]] == [200]
    assert delivery["attempts"][0]["duration_s"] > 0 and delivery["attempts"][0]["sender"]
    assert secret not in caplog.text


def test_a_receiver_answering_500_then_200_is_retried_and_every_attempt_is_logged(hooked: Hooked) -> None:
    with WebhookReceiver([500, 503, 200]) as receiver, hooked.client() as client:
        webhook = client.add_webhook("p", receiver.url, events=["audit.succeeded"])
        hooked.audit()
        [delivery] = settled(hooked, "p", webhook["id"])
    assert delivery["state"] == "delivered" and delivery["attempt_count"] == 3
    attempts = delivery["attempts"]
    assert [(a["number"], a["status_code"], a["error_code"]) for a in attempts] == [
        (1, 500, "http_status"),
        (2, 503, "http_status"),
        (3, 200, None),
    ]
    assert attempts[0]["error"] == "HTTP 500"
    # Exponential backoff: the second wait (0.8 s) is 4 times the first (0.2 s).
    starts = [a["started_at"] for a in attempts]
    gaps = [
        (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
        for a, b in itertools.pairwise(starts)
    ]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.8, gaps
    # The idempotency id and the body are the same on every attempt; the signature's timestamp is fresh.
    assert {r.headers["x-auditor-delivery"] for r in receiver.received} == {delivery["id"]}
    assert len({r.body for r in receiver.received}) == 1
    assert [r.headers["x-auditor-attempt"] for r in receiver.received] == ["1", "2", "3"]
    metrics = httpx.get(f"{hooked.url}/metrics").text
    assert 'auditor_webhook_deliveries{state="delivered"} 1.0' in metrics


def test_gate_failed_is_delivered_for_a_failing_policy(hooked: Hooked) -> None:
    failing = {"rules": [{"metric": "fid", "max": 1e-9}]}
    with WebhookReceiver() as gate, WebhookReceiver() as everything, hooked.client() as client:
        gate_hook = client.add_webhook("p", gate.url, events=["gate.failed"])
        all_hook = client.add_webhook("p", everything.url)
        passed = hooked.audit()  # no policy: no gate.failed
        failed = hooked.audit(policy=failing)
        assert failed["passed"] is False
        settled(hooked, "p", all_hook["id"], count=3)
        [gate_delivery] = settled(hooked, "p", gate_hook["id"])
    assert gate_delivery["event"] == "gate.failed" and gate_delivery["audit_id"] == failed["id"]
    [body] = gate.bodies()
    assert body["event"] == "gate.failed" and body["audit"]["passed"] is False
    verdict = body["audit"]["verdict"]
    assert verdict["passed"] is False and verdict["failed"] == 1
    [rule] = verdict["failed_rules"]
    assert (rule["metric"], rule["bound"], rule["threshold"], rule["tier"]) == ("fid", "max", 1e-9, "fail")
    assert rule["message"].startswith("fid.value = ")
    events = sorted((b["audit"]["id"], b["event"]) for b in everything.bodies())
    assert events == sorted(
        [(passed["id"], "audit.succeeded"), (failed["id"], "audit.succeeded"), (failed["id"], "gate.failed")]
    )


def test_audit_failed_is_delivered_with_the_error(hooked: Hooked) -> None:
    rng = np.random.default_rng(0)
    np.save(hooked.home / "real8.npy", rng.normal(size=(100, 8)).astype(np.float32))
    np.save(hooked.home / "synthetic4.npy", rng.normal(size=(100, 4)).astype(np.float32))
    mismatched = {"real": str(hooked.home / "real8.npy"), "synthetic": str(hooked.home / "synthetic4.npy")}
    with WebhookReceiver() as receiver, hooked.client() as client:
        webhook = client.add_webhook("p", receiver.url, events=["audit.failed"])
        audit = hooked.audit(data=mismatched)
        assert audit["state"] == "failed"
        [delivery] = settled(hooked, "p", webhook["id"])
    assert delivery["event"] == "audit.failed"
    [body] = receiver.bodies()
    assert body["audit"]["state"] == "failed" and body["audit"]["error"]["code"] == "dimension_mismatch"
    assert "report" not in body["links"]


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("https://10.0.0.1/hook", 403, "host_not_allowed"),
        ("https://10.255.0.9:8443/hook", 403, "host_not_allowed"),
        ("https://169.254.169.254/latest/meta-data/", 403, "host_not_allowed"),
        ("https://localhost/hook", 403, "host_not_allowed"),
        ("https://127.0.0.1/hook", 403, "host_not_allowed"),
        ("https://2130706433/hook", 403, "host_not_allowed"),
        ("https://192.168.1.10/", 403, "host_not_allowed"),
        ("http://example.com/hook", 403, "scheme_not_allowed"),
        ("https://no-such-host.invalid/hook", 404, "host_not_found"),
        ("https://[::1]/hook", 422, "invalid_request"),
        ("https://user@example.com/", 422, "invalid_request"),
        ("gopher://example.com/", 422, "invalid_request"),
    ],
)
def test_subscriptions_to_internal_or_unusable_urls_are_refused_without_an_allow_list(
    service: Any, url: str, status: int, code: str
) -> None:
    """The default operator settings (https only, no allow-list), as tests/api/conftest.py's service."""
    with service.client() as client, pytest.raises(ApiError) as refused:
        client.add_webhook("p", url)
    assert (refused.value.http_status, refused.value.code) == (status, code), refused.value.message
    if code == "host_not_allowed":
        assert refused.value.details["setting"] == "AUDITOR_WEBHOOK_ALLOW_HOSTS"
    with service.context.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Webhook)) == 0


def test_a_host_that_turns_internal_after_subscribing_is_refused_at_delivery(
    hooked: Hooked, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name resolved to an allowed address when subscribing, to a private one when
    the delivery is due. The delivery fails at once (not retried) and nothing is sent."""
    answers = {"hooks.partner.example": "127.0.0.1"}
    monkeypatch.setattr(webhooks, "lookup", lambda host, port: [(2, 1, 6, answers[host])])
    with WebhookReceiver() as receiver, hooked.client() as client:
        port = receiver.url.rsplit(":", 1)[1]
        webhook = client.add_webhook("p", f"http://hooks.partner.example:{port}/hook")
        answers["hooks.partner.example"] = "10.20.30.40"
        hooked.audit()
        [delivery] = settled(hooked, "p", webhook["id"])
    assert receiver.received == []
    assert delivery["state"] == "failed" and delivery["attempt_count"] == 1
    [attempt] = delivery["attempts"]
    assert attempt["error_code"] == "host_not_allowed" and "private" in attempt["error"]
    assert attempt["status_code"] is None


def test_the_operator_taking_http_back_fails_the_delivery(hooked: Hooked) -> None:
    with WebhookReceiver() as receiver, hooked.client() as client:
        webhook = client.add_webhook("p", receiver.url)
        hooked.context.settings = hooked.context.settings.model_copy(update={"webhook_schemes": "https"})
        hooked.audit()
        [delivery] = settled(hooked, "p", webhook["id"])
    assert receiver.received == []
    assert delivery["attempts"][0]["error_code"] == "scheme_not_allowed" and delivery["state"] == "failed"


def test_bounds_and_the_callers_own_secret(hooked: Hooked) -> None:
    secret = "my-own-secret-0123456789"
    with WebhookReceiver() as receiver, hooked.client() as client:
        own = client.add_webhook("p", receiver.url, events=["audit.succeeded"], secret=secret)
        assert own["secret"] == secret
        for _ in range(2):
            client.add_webhook("p", f"{receiver.url}/more", events=["audit.failed"])
        with pytest.raises(ApiError) as full:
            client.add_webhook("p", receiver.url)
        assert (full.value.http_status, full.value.code) == (409, "too_many_webhooks")
        assert full.value.details["setting"] == "AUDITOR_MAX_WEBHOOKS_PER_PROJECT"
        client.add_webhook("q", receiver.url)  # the limit is per project
        for body in (
            {"url": receiver.url, "events": ["audit.started"]},
            {"url": receiver.url, "events": []},
            {"url": receiver.url, "secret": "short"},
            {"url": receiver.url, "secret": "x" * 257},
            {"url": receiver.url + "/" + "a" * 2048},
            {"url": receiver.url, "unknown": 1},
        ):
            with pytest.raises(ApiError) as bad:
                client._json("POST", "/v1/projects/r/webhooks", json=body)
            assert (bad.value.http_status, bad.value.code) == (422, "invalid_request"), body
        hooked.audit()
        [delivery] = settled(hooked, "p", own["id"])
    assert delivery["state"] == "delivered"
    [received] = receiver.received
    assert webhooks.verify_signature(secret, received.headers["x-auditor-signature"], received.body)


def test_a_project_key_sees_only_its_projects_webhooks(hooked: Hooked) -> None:
    with WebhookReceiver() as receiver, hooked.client() as admin:
        theirs = admin.add_webhook("b", receiver.url)
        key = hooked.project_key("a")
        with hooked.client(key) as client:
            ours = client.add_webhook("a", receiver.url)
            assert [w["id"] for w in client.webhooks("a")] == [ours["id"]]
            for call in (
                lambda: client.webhooks("b"),
                lambda: client.add_webhook("b", receiver.url),
                lambda: client.remove_webhook("b", theirs["id"]),
                lambda: client.webhook_deliveries("b", theirs["id"]),
            ):
                with pytest.raises(ApiError) as refused:
                    call()
                assert (refused.value.http_status, refused.value.code) == (403, "forbidden")
            # Another project's id under its own project: the same answer as an unknown id.
            for call in (
                lambda: client.remove_webhook("a", theirs["id"]),
                lambda: client.webhook_deliveries("a", theirs["id"]),
            ):
                with pytest.raises(ApiError) as unknown:
                    call()
                assert (unknown.value.http_status, unknown.value.code) == (404, "not_found")
        assert {w["id"] for w in admin.webhooks("b")} == {theirs["id"]}
        hooked.audit("b")
        settled(hooked, "b", theirs["id"])
        with hooked.client(key) as client:
            assert client.webhook_deliveries("a", ours["id"]) == []  # b's audit: only b's webhook
        admin.remove_webhook("b", theirs["id"])
        assert admin.webhooks("b") == []
        with pytest.raises(ApiError) as gone:
            admin.webhook_deliveries("b", theirs["id"])
        assert gone.value.http_status == 404


def test_the_cli_verbs(hooked: Hooked, tmp_path: Path) -> None:
    from auditor.cli.main import app

    env = {"AUDITOR_API_URL": hooked.url, "AUDITOR_API_KEY": hooked.admin_key, "COLUMNS": "200"}
    runner = CliRunner()
    secret_file = tmp_path / "secret"
    secret_file.write_text("cli-secret-0123456789\n")
    with WebhookReceiver([500, 200]) as receiver:
        added = runner.invoke(
            app,
            [
                "webhooks",
                "add",
                receiver.url,
                "--project",
                "cli",
                "--event",
                "audit.succeeded",
                "--secret-file",
                str(secret_file),
            ],
            env=env,
        )
        assert added.exit_code == 0, added.output
        webhook_id = added.stdout.strip()
        assert len(webhook_id) == 32 and "cli-secret" not in added.output  # its own secret: not echoed
        generated = runner.invoke(
            app, ["webhooks", "add", receiver.url, "--project", "cli", "--event", "gate.failed"], env=env
        )
        assert generated.exit_code == 0 and generated.stdout.split()[1].startswith("whsec_")
        listed = runner.invoke(app, ["webhooks", "list", "--project", "cli"], env=env)
        assert webhook_id in listed.stdout and "whsec_" not in listed.stdout
        hooked.audit("cli")
        settled(hooked, "cli", webhook_id)
        shown = runner.invoke(app, ["webhooks", "deliveries", webhook_id, "--project", "cli"], env=env)
        assert shown.exit_code == 0 and "delivered" in shown.stdout and "500, 200" in shown.stdout, (
            shown.stdout
        )
        as_json = runner.invoke(
            app, ["webhooks", "deliveries", webhook_id, "--project", "cli", "--json", "-"], env=env
        )
        [row] = json.loads(as_json.stdout)["deliveries"]
        assert [a["status_code"] for a in row["attempts"]] == [500, 200]
        [_, second] = receiver.received
        assert webhooks.verify_signature(
            "cli-secret-0123456789", second.headers["x-auditor-signature"], second.body
        )
        removed = runner.invoke(app, ["webhooks", "remove", webhook_id, "--project", "cli"], env=env)
        assert removed.exit_code == 0 and f"webhook {webhook_id} removed" in removed.stderr
        unknown = runner.invoke(app, ["webhooks", "remove", webhook_id, "--project", "cli"], env=env)
        assert unknown.exit_code == 2 and "error [not_found]" in unknown.stderr
        refused = runner.invoke(app, ["webhooks", "add", "https://10.0.0.1/x", "--project", "cli"], env=env)
        assert refused.exit_code == 2 and "error [host_not_allowed]" in refused.stderr
