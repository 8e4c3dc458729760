"""Waivers through the API: a waived rule shows WAIVED with reason, author and expiry; revocable; history."""

from __future__ import annotations

import time
from typing import Any

import pytest

from auditor.client import ApiError
from auditor.gates.output import GateOutcome, render

FAST = {"metrics": ["fid", "recall"], "bootstrap": 20, "spectral_bootstrap": 3}
FAILING = {"name": "strict", "rules": [{"metric": "fid", "max": 1e-9}, {"metric": "recall", "min": 0.0}]}


def body(service, project: str, **extra: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {
        "real": {"uri": service.data["real"]},
        "synthetic": {"uri": service.data["synthetic"]},
        "params": FAST,
        "policy": FAILING,
        "project": project,
        **extra,
    }


def finished(client, submitted: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    done = client.wait(submitted["id"], timeout=120, poll_s=0.2)
    assert done["state"] == "succeeded", done
    return done


def test_an_audit_waiver_passes_its_gate_until_revoked(service) -> None:  # type: ignore[no-untyped-def]
    with service.client() as client:
        audit = finished(client, client.submit(body(service, "vision")))
        assert audit["passed"] is False
        waiver = client.add_waiver(
            "vision", "fid", "known FID drift of the new encoder", days=7, audit_id=audit["id"]
        )
        assert waiver["active"] and waiver["audit_id"] == audit["id"]
        assert waiver["created_by"].startswith("sda_")  # the admin key's prefix
        judged = client.get(audit["id"])
        assert judged["passed"] is True
        verdict = judged["result"]["verdict"]
        fid = verdict["rules"][0]
        assert fid["outcome"] == "waived" and fid["waived_from"] == "fail"
        assert fid["waiver"]["reason"] == "known FID drift of the new encoder"
        assert verdict["waived"] == 1 and verdict["failed"] == 0 and verdict["waivers"] == [waiver["id"]]
        text = render(GateOutcome.from_audit(judged), "text")
        assert "WAIVED" in text and "known FID drift" in text and text.rstrip().endswith("gate=pass")

        client.revoke_waiver("vision", waiver["id"])
        again = client.get(audit["id"])
        assert again["passed"] is False and again["result"]["verdict"]["rules"][0]["outcome"] == "fail"
        (listed,) = client.waivers("vision")
        assert listed["revoked_at"] and listed["revoked_by"] and listed["active"] is False  # the history
        assert client.waivers("vision", active=True) == []


def test_a_project_waiver_judges_later_audits_and_expires(service) -> None:  # type: ignore[no-untyped-def]
    with service.client() as client:
        client.submit({**body(service, "faces"), "policy": {"rules": [{"metric": "fid", "max": 100.0}]}})
        waiver = client.add_waiver("faces", "fid", "baseline encoder swap", days=30)
        later = finished(client, client.submit(body(service, "faces")))
        assert later["passed"] is True
        assert later["result"]["verdict"]["rules"][0]["waiver"]["id"] == waiver["id"]
        # Another project's audits are not waived.
        elsewhere = finished(client, client.submit(body(service, "other")))
        assert elsewhere["passed"] is False
        # An expired waiver waives nothing.
        short = client.add_waiver("other", "fid", "for a second", days=1.5e-5)
        time.sleep(1.6)
        after = finished(client, client.submit(body(service, "other")))
        assert after["passed"] is False
        assert {w["id"]: w["active"] for w in client.waivers("other")} == {short["id"]: False}


def test_bad_waivers_are_refused_and_projects_are_isolated(service) -> None:  # type: ignore[no-untyped-def]
    with service.client() as client:
        audit = finished(client, client.submit(body(service, "alpha")))
        for bad in ({"metric": "fidd"}, {"days": 0}, {"days": 400}, {"reason": ""}):
            payload = {"metric": "fid", "reason": "r", "days": 1.0, **bad}
            with pytest.raises(ApiError) as refused:
                client._json("POST", "/v1/projects/alpha/waivers", json=payload)
            assert refused.value.http_status == 422, bad
        client.submit(body(service, "beta"))
        with pytest.raises(ApiError) as wrong_project:
            client.add_waiver("beta", "fid", "not yours", audit_id=audit["id"])
        assert wrong_project.value.http_status == 404
    with service.client(service.project_key("beta")) as beta:
        with pytest.raises(ApiError) as forbidden:
            beta.add_waiver("alpha", "fid", "not yours")
        assert forbidden.value.http_status == 403
        with pytest.raises(ApiError) as hidden:
            beta.waivers("alpha")
        assert hidden.value.http_status == 403
