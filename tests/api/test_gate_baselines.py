"""Baseline rules through the API: resolved from the project's history at submit, never from the caller."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.services import write_embeddings

from auditor.client import ApiError

FAST = {"metrics": ["fid", "recall"], "bootstrap": 30, "spectral_bootstrap": 5}


def body(real: str, synthetic: str, **extra: Any) -> dict[str, Any]:
    return {
        "real": {"uri": real},
        "synthetic": {"uri": synthetic},
        "params": FAST,
        "project": "chain",
        **extra,
    }


def test_a_parent_baseline_is_resolved_at_submit_and_gates_the_child(service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    drifted = write_embeddings(tmp_path / "drifted", shift=0.8)["synthetic"]
    real, good = service.data["real"], service.data["synthetic"]
    relative = {"rules": [{"metric": "fid", "baseline": "parent", "max_increase": "25%"}]}
    with service.client() as client:
        parent = client.wait(client.submit(body(real, good))["id"], timeout=120, poll_s=0.2)
        assert parent["state"] == "succeeded"
        child = client.submit(body(real, drifted, policy=relative, parent_audit_id=parent["id"]))
        done = client.wait(child["id"], timeout=120, poll_s=0.2)
        assert done["state"] == "succeeded" and done["passed"] is False
        (rule,) = done["result"]["verdict"]["rules"]
        assert rule["baseline"]["audit_id"] == parent["id"]
        assert rule["baseline"]["value"] == parent["result"]["metrics"]["fid"]["value"]

        # Errors before anything is queued: no parent, a baseline in another project, caller-set numbers.
        with pytest.raises(ApiError) as no_parent:
            client.submit(body(real, drifted, policy=relative))
        assert no_parent.value.http_status == 422 and no_parent.value.code == "invalid_policy"
        elsewhere = client.wait(
            client.submit({**body(real, good), "project": "other"})["id"], timeout=120, poll_s=0.2
        )
        named = {"rules": [{"metric": "fid", "baseline": f"audit:{elsewhere['id']}", "beyond": "noise"}]}
        with pytest.raises(ApiError) as other_project:
            client.submit(body(real, drifted, policy=named))
        assert other_project.value.code == "invalid_policy"
        assert "another project" in other_project.value.message or "not found" in other_project.value.message
        forged = {
            "parent": {"source": "parent", "audit_id": parent["id"], "metrics": {"fid": {"value": 99.0}}}
        }
        with pytest.raises(ApiError) as forging:
            client.submit(
                body(real, drifted, policy=relative, parent_audit_id=parent["id"], baselines=forged)
            )
        assert forging.value.http_status == 422
