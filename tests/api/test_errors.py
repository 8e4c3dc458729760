"""Every bad input answers a documented 4xx with the one error shape; never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


def post(
    service, payload: Any, *, key: str | None = None, path: str = "/v1/audits", **kwargs: Any
) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key or service.admin_key}", **kwargs.pop("headers", {})}
    return httpx.post(f"{service.url}{path}", json=payload, headers=headers, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"extractor": "resnet-9000"}, 422, "unknown_name"),
        ({"synthetic": {"uri": "data/missing-gen.npy"}}, 404, "dataset_not_found"),
        ({"synthetic": {"uri": "ftp://host/gen.npy"}}, 422, "unsupported_scheme"),
        ({"params": {"metrics": ["fid", "sharpness"]}}, 422, "invalid_request"),
        ({"params": {"nearest_k": 0}}, 422, "invalid_request"),
        ({"policy": {"rules": [{"metric": "fid"}]}}, 422, "invalid_policy"),
        ({"policy_name": "missing"}, 404, "not_found"),
        ({"parent_audit_id": "0" * 32}, 404, "not_found"),
        ({"surprise": 1}, 422, "invalid_request"),
        ({"synthetic": {"uri": "/etc/passwd"}}, 403, "path_not_allowed"),
        ({"synthetic": {"uri": "../../../../etc/passwd"}}, 403, "path_not_allowed"),
        ({"extractor": "tabular"}, 422, "wrong_modality"),
        ({"synthetic": {"uri": "s3://bucket/gen.npy"}}, 403, "scheme_not_allowed"),
    ],
)
def test_bad_submissions(service, change: dict[str, Any], status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    payload = {
        "real": {"uri": service.data["real"]},
        "synthetic": {"uri": service.data["synthetic"]},
        **change,
    }
    assert_error(post(service, payload), status, code)


def test_malformed_json_is_invalid_request(service) -> None:  # type: ignore[no-untyped-def]
    response = httpx.post(
        f"{service.url}/v1/audits",
        content=b"{not json",
        headers={"Authorization": f"Bearer {service.admin_key}", "Content-Type": "application/json"},
    )
    assert_error(response, 422, "invalid_request")


def test_oversized_body_is_413(service) -> None:  # type: ignore[no-untyped-def]
    payload = {"real": {"uri": "x"}, "synthetic": {"uri": "y"}, "tags": ["x" * 100_000]}
    assert_error(post(service, payload), 413, "request_too_large")


def test_keys_are_required_and_checked(service) -> None:  # type: ignore[no-untyped-def]
    payload = {"real": {"uri": service.data["real"]}, "synthetic": {"uri": service.data["synthetic"]}}
    assert_error(httpx.post(f"{service.url}/v1/audits", json=payload), 401, "unauthorized")
    assert_error(post(service, payload, key="sda_00000000_forged"), 401, "unauthorized")
    response = httpx.get(f"{service.url}/v1/audits", headers={"Authorization": "Basic abc"})
    assert_error(response, 401, "unauthorized")


def test_a_project_key_never_sees_another_projects_audits(service) -> None:  # type: ignore[no-untyped-def]
    payload = {
        "real": {"uri": service.data["real"]},
        "synthetic": {"uri": service.data["synthetic"]},
        "params": {"metrics": ["fid"], "bootstrap": 0, "spectral_bootstrap": 0},
    }
    alpha_key, beta_key = service.project_key("alpha"), service.project_key("beta")
    alpha_audit = post(service, {**payload, "project": "alpha"}, key=alpha_key).json()["id"]
    assert_error(post(service, {**payload, "project": "alpha"}, key=beta_key), 403, "forbidden")

    beta = {"Authorization": f"Bearer {beta_key}"}
    assert_error(httpx.get(f"{service.url}/v1/audits/{alpha_audit}", headers=beta), 403, "forbidden")
    assert_error(httpx.post(f"{service.url}/v1/audits/{alpha_audit}/cancel", headers=beta), 403, "forbidden")
    assert_error(httpx.get(f"{service.url}/v1/audits/{alpha_audit}/report", headers=beta), 403, "forbidden")
    assert_error(
        httpx.get(f"{service.url}/v1/projects/alpha/trends?metric=fid", headers=beta), 403, "forbidden"
    )
    assert_error(httpx.get(f"{service.url}/v1/audits?project=alpha", headers=beta), 403, "forbidden")
    listed = httpx.get(f"{service.url}/v1/audits", headers=beta).json()
    assert listed["items"] == []  # beta's own (empty) view, not alpha's audit
    projects = httpx.get(f"{service.url}/v1/projects", headers=beta).json()
    assert [p["name"] for p in projects] == ["beta"]
    alpha_view = httpx.get(
        f"{service.url}/v1/audits", headers={"Authorization": f"Bearer {alpha_key}"}
    ).json()
    assert [item["id"] for item in alpha_view["items"]] == [alpha_audit]
    assert_error(post(service, {"name": "gamma"}, key=alpha_key, path="/v1/projects"), 403, "forbidden")


def test_unknown_things_are_404(service) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {service.admin_key}"}
    assert_error(httpx.get(f"{service.url}/v1/audits/{'f' * 32}", headers=headers), 404, "not_found")
    assert_error(
        httpx.get(f"{service.url}/v1/projects/nope/trends?metric=fid", headers=headers), 404, "not_found"
    )
    assert_error(httpx.get(f"{service.url}/v1/nowhere", headers=headers), 404, "not_found")
    assert_error(httpx.get(f"{service.url}/v1/audits?cursor=%%%", headers=headers), 422, "bad_input")
    response = httpx.get(f"{service.url}/v1/projects/default/trends?metric=nonsense", headers=headers)
    assert response.status_code in (404, 422) and "error" in response.json()


def test_health_readiness_metrics_and_openapi(service) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(f"{service.url}/healthz").json()["status"] == "ok"
    ready = httpx.get(f"{service.url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    httpx.get(f"{service.url}/v1/audits", headers={"Authorization": f"Bearer {service.admin_key}"})
    metrics = httpx.get(f"{service.url}/metrics").text
    assert 'auditor_http_requests_total{method="GET",route="/v1/audits",status="200"}' in metrics
    assert "auditor_queue_depth" in metrics and "auditor_http_request_duration_seconds_bucket" in metrics
    spec = httpx.get(f"{service.url}/openapi.json").json()
    assert {
        "/v1/audits",
        "/v1/audits/{audit_id}",
        "/v1/audits/{audit_id}/cancel",
        "/v1/projects/{project}/trends",
    } <= set(spec["paths"])
    assert "ErrorBody" in spec["components"]["schemas"]


def test_cors_allows_only_configured_origins(service) -> None:  # type: ignore[no-untyped-def]
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = httpx.options(
        f"{service.url}/v1/audits", headers={"Origin": "https://dashboard.example", **preflight}
    )
    refused = httpx.options(
        f"{service.url}/v1/audits", headers={"Origin": "https://evil.example", **preflight}
    )
    assert allowed.headers.get("access-control-allow-origin") == "https://dashboard.example"
    assert "access-control-allow-origin" not in refused.headers
