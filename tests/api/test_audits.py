"""The API over real HTTP (uvicorn on loopback) with the in-process worker, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from helpers.services import write_embeddings

from auditor.client import ApiError
from auditor.db.models import Audit, Dataset, Project

FAST = {"metrics": ["fid", "precision", "recall", "coverage"], "bootstrap": 20, "spectral_bootstrap": 5}


def body(data: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"real": {"uri": data["real"]}, "synthetic": {"uri": data["synthetic"]}, "params": FAST, **extra}


def test_submit_runs_and_records_the_audit(service) -> None:  # type: ignore[no-untyped-def]
    with service.client() as client:
        accepted = client.submit(body(service.data, project="faces", tags=["nightly"]))
        assert accepted["state"] in ("queued", "running")
        assert accepted["result"] is None
        done = client.wait(accepted["id"], timeout=120, poll_s=0.2)
    assert done["state"] == "succeeded", done
    assert done["project"] == "faces"
    assert set(done["result"]["metrics"]) == set(FAST["metrics"])
    assert done["result"]["synthetic"]["n"] == 300
    assert done["progress"]["load"]["done"] == 2
    states = [event["state"] for event in done["events"]]
    assert states == ["queued", "running", "succeeded"], states
    assert done["attempts"] == 1 and done["started_at"] and done["finished_at"]


def test_submit_answers_202_with_location_at_once(service) -> None:  # type: ignore[no-untyped-def]
    response = httpx.post(
        f"{service.url}/v1/audits",
        json=body(service.data),
        headers={"Authorization": f"Bearer {service.admin_key}"},
    )
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/audits/{response.json()['id']}"


def test_a_project_removed_under_the_api_is_recreated_on_the_next_submit(service) -> None:  # type: ignore[no-untyped-def]
    """The API caches project ids; a stale one (the row deleted underneath) must not lose a submit."""
    with service.client() as client:
        first = client.submit(body(service.data, project="vanishing"))
        client.wait(first["id"], timeout=120, poll_s=0.2)
        with service.context.session() as session:  # as an operator pruning a project might
            project_id = session.scalar(sa.select(Project.id).where(Project.name == "vanishing"))
            for model in (Audit, Dataset):
                session.execute(sa.delete(model).where(model.project_id == project_id))
            session.execute(sa.delete(Project).where(Project.id == project_id))
        second = client.submit(body(service.data, project="vanishing"))
        done = client.wait(second["id"], timeout=120, poll_s=0.2)
    assert second["project"] == "vanishing" and done["state"] == "succeeded", done
    with service.context.session() as session:
        project_id = session.scalar(sa.select(Project.id).where(Project.name == "vanishing"))
    assert service.context.project_ids["vanishing"] == project_id


def test_idempotency_key_returns_the_same_audit(service) -> None:  # type: ignore[no-untyped-def]
    with service.client() as client:
        first = client.submit(body(service.data), idempotency_key="gen-7")
        second = client.submit(body(service.data), idempotency_key="gen-7")
        third = client.submit(body(service.data), idempotency_key="gen-8")
        listed = client.list(limit=50)
    assert first["id"] == second["id"]
    assert third["id"] != first["id"]
    assert len(listed["items"]) == 2


def test_trends_return_the_series_over_generations(service) -> None:  # type: ignore[no-untyped-def]
    with service.client() as client:
        parent = None
        ids = []
        for generation, shift in enumerate((0.0, 0.5, 1.0)):
            paths = write_embeddings(service.home / f"gen{generation}", shift=shift)
            audit = client.submit(body(paths, project="chain", generation=generation, parent_audit_id=parent))
            parent = audit["id"]
            ids.append(client.wait(audit["id"], timeout=120, poll_s=0.2)["id"])
        trends = client.trends("chain", "fid")
        report = client.report(ids[-1])
    assert len(trends["series"]) == 1  # one protocol
    points = trends["series"][0]["points"]
    assert [p["generation"] for p in points] == [0, 1, 2]
    assert [p["audit_id"] for p in points] == ids
    fids = [p["value"] for p in points]
    assert fids[0] < fids[1] < fids[2], fids  # the drift grows with the shift
    assert all(p["ci_low"] <= p["value"] <= p["ci_high"] for p in points)
    assert "<html" in report.lower() and "Across generations" in report


def test_list_filters_and_cursor_pagination(service) -> None:  # type: ignore[no-untyped-def]
    with service.client() as client:
        ids = [client.submit(body(service.data, tags=[f"t{i % 2}"]))["id"] for i in range(5)]
        for audit_id in ids:
            client.wait(audit_id, timeout=120, poll_s=0.2)
        seen: list[str] = []
        cursor = None
        while True:
            page = client.list(limit=2, cursor=cursor)
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        tagged = client.list(tag="t0")
        succeeded = client.list(state="succeeded", project="default")
        none_failed = client.list(state="failed")
    assert seen == list(reversed(ids))  # newest first, each exactly once
    assert {item["id"] for item in tagged["items"]} == {ids[0], ids[2], ids[4]}
    assert len(succeeded["items"]) == 5
    assert none_failed["items"] == []


def test_a_failed_audit_records_the_reason(service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    wide = tmp_path / "wide.npy"
    np.save(wide, np.zeros((300, 8), dtype=np.float32))  # 8 features vs 16: dimension mismatch
    with service.client() as client:
        audit = client.submit({"real": {"uri": service.data["real"]}, "synthetic": {"uri": str(wide)}})
        done = client.wait(audit["id"], timeout=120, poll_s=0.2)
    assert done["state"] == "failed"
    assert done["error"]["code"] == "dimension_mismatch", done["error"]


def test_named_policy_versions_gate_the_audit(service) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {service.admin_key}"}
    strict = {"rules": [{"metric": "fid", "max": 1e-9}]}
    loose = {"rules": [{"metric": "fid", "max": 100.0}]}
    for policy in (strict, loose):
        response = httpx.post(
            f"{service.url}/v1/projects/default/policies",
            json={"name": "release", "body": policy},
            headers=headers,
        )
        assert response.status_code == 201, response.text
    versions = httpx.get(f"{service.url}/v1/projects/default/policies", headers=headers).json()
    assert [v["version"] for v in versions] == [1, 2]
    with service.client() as client:
        latest = client.wait(
            client.submit(body(service.data, policy_name="release"))["id"], timeout=120, poll_s=0.2
        )
        pinned = client.wait(
            client.submit(body(service.data, policy_name="release", policy_version=1))["id"],
            timeout=120,
            poll_s=0.2,
        )
    assert latest["passed"] is True
    assert pinned["passed"] is False
    assert pinned["result"]["verdict"]["rules"][0]["metric"] == "fid"


def test_cancel_a_finished_audit_is_a_conflict(service) -> None:  # type: ignore[no-untyped-def]
    with service.client() as client:
        audit = client.wait(client.submit(body(service.data))["id"], timeout=120, poll_s=0.2)
        with pytest.raises(ApiError) as caught:
            client.cancel(audit["id"])
    assert caught.value.http_status == 409 and caught.value.code == "conflict"
