"""Webhooks from real Celery worker processes (PostgreSQL, a private Redis): a worker SIGKILLed while its
request is in flight loses nothing. The delivery stays pending under its lease; once the lease is over
the next worker sends it again, with the same X-Auditor-Delivery, and the killed attempt is recorded as
interrupted (at least once: the receiver dedupes on the id)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from helpers.http_servers import WebhookReceiver
from helpers.services import wait_for, write_embeddings

from auditor.db.models import WebhookDelivery
from auditor.webhooks import verify_signature

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
# The receiver is on loopback: allowed as an operator allows an internal host. A 2 s timeout makes the
# lease 3 x 2 + 5 = 11 s: how long a killed sender's delivery waits before it is taken again.
WEBHOOK_ENV = {
    "AUDITOR_WEBHOOK_SCHEMES": "https,http",
    "AUDITOR_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
    "AUDITOR_WEBHOOK_TIMEOUT_S": "2",
    "AUDITOR_WEBHOOK_POLL_S": "0.2",
    "AUDITOR_WEBHOOK_BACKOFF_S": "0.5",
}
QUICK = {"metrics": ["fid", "precision"], "bootstrap": 5, "spectral_bootstrap": 0}


def test_a_delivery_survives_a_worker_sigkilled_mid_request(cluster) -> None:  # type: ignore[no-untyped-def]
    cluster.env.update(WEBHOOK_ENV)
    # The API process validates subscriptions with the same rules as the workers.
    cluster.context.settings = cluster.context.settings.model_copy(
        update={"webhook_schemes": "https,http", "webhook_allow_hosts": "127.0.0.1"}
    )
    paths = write_embeddings(cluster.home / "data", n=150, d=8)
    with WebhookReceiver([200], hold=1) as receiver, cluster.client() as client:
        webhook = client.add_webhook("default", f"{receiver.url}/hook", events=["audit.succeeded"])
        first = cluster.start_worker()
        audit = client.submit(
            {"real": {"uri": paths["real"]}, "synthetic": {"uri": paths["synthetic"]}, "params": QUICK}
        )
        assert client.wait(audit["id"], timeout=120, poll_s=0.2)["state"] == "succeeded", cluster.logs()
        # The worker's sender has POSTed and waits for the answer, which the receiver holds back.
        assert receiver.arrived.wait(30), cluster.logs()
        first.kill()  # SIGKILL: the attempt is never recorded, the delivery never marked
        receiver.release()
        [delivery] = client.webhook_deliveries("default", webhook["id"])
        assert delivery["state"] == "pending" and delivery["attempts"][0]["finished_at"] is None
        cluster.start_worker()  # starts while the lease runs out

        def delivered() -> list[dict[str, object]] | None:
            rows = client.webhook_deliveries("default", webhook["id"])
            return rows if rows[0]["state"] == "delivered" else None

        [delivery] = wait_for(delivered, 60, "the delivery to be sent again")
    assert delivery["attempt_count"] == 2
    killed, retried = delivery["attempts"]
    assert killed["error_code"] == "interrupted" and killed["status_code"] is None
    assert retried["status_code"] == 200 and retried["sender"] != killed["sender"]
    assert killed["sender"].endswith(f":{first.process.pid}")
    # Both requests reached the receiver: the same delivery id and body, each signed.
    assert [r.headers["x-auditor-delivery"] for r in receiver.received] == [delivery["id"]] * 2
    assert len({r.body for r in receiver.received}) == 1
    with cluster.context.session() as session:
        secret = session.scalar(sa.text("SELECT secret FROM webhooks"))
        assert session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 1
    assert all(verify_signature(secret, r.headers["x-auditor-signature"], r.body) for r in receiver.received)
