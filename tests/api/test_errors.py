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
        ({"synthetic": {"uri": "data/gen\u0000.npy"}}, 422, "invalid_request"),
        ({"synthetic": {"uri": "file:///data/gen%00.npy"}}, 404, "dataset_not_found"),
        ({"synthetic": {"uri": "//[broken/gen.npy"}}, 404, "dataset_not_found"),
        ({"synthetic": {"uri": "data/" + "x" * 300 + ".npy"}}, 404, "dataset_not_found"),
        ({"params": {"metrics": []}}, 422, "invalid_request"),
        ({"params": {"nearest_k": "5"}}, 422, "invalid_request"),
        ({"policy": {"rules": [{"metric": "fid", "max": False}]}}, 422, "invalid_policy"),
        (
            {"policy": {"rules": [{"metric": "recall", "min": 0.5}]}, "params": {"metrics": ["fid"]}},
            422,
            "invalid_policy",
        ),
        ({"project": "a\u0000b"}, 422, "invalid_request"),
        ({"tags": ["nightly\n"]}, 422, "invalid_request"),
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
    assert_error(httpx.get(f"{service.url}/v1/audits?cursor=%%%", headers=headers), 422, "invalid_request")
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


# --- numbers a caller controls are bounded by what stores them ------------------------------------------

TOO_BIG = 11780042549188952064  # > 2**63: an OverflowError (500) in the database driver before the bound


@pytest.mark.parametrize(
    "change",
    [
        {"generation": TOO_BIG},
        {"generation": 2**31},  # one past PostgreSQL's INTEGER
        {"policy_name": "release", "policy_version": TOO_BIG},
        {"policy_name": "release", "policy_version": 2**31},
        {"params": {"seed": 2**70}},  # failed the audit as internal_error in torch.manual_seed
        {"params": {"seed": -1}},
    ],
)
def test_numbers_beyond_their_columns_are_422(service, change: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    payload = {
        "real": {"uri": service.data["real"]},
        "synthetic": {"uri": service.data["synthetic"]},
        **change,
    }
    error = assert_error(post(service, payload), 422, "invalid_request")
    assert error["details"]["problems"], error


@pytest.mark.parametrize("version", [str(TOO_BIG), str(2**31), "0", "-1"])
def test_policy_versions_beyond_the_column_are_422(service, version: str) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {service.admin_key}"}
    url = f"{service.url}/v1/projects/default/policies/release?version={version}"
    assert_error(httpx.get(url, headers=headers), 422, "invalid_request")


def test_the_largest_integers_the_columns_hold_are_accepted(service) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {service.admin_key}"}
    url = f"{service.url}/v1/projects/default/policies/release?version={2**31 - 1}"
    assert_error(httpx.get(url, headers=headers), 404, "not_found")  # a valid request: no such project
    payload = {
        "real": {"uri": service.data["real"]},
        "synthetic": {"uri": service.data["synthetic"]},
        "generation": 2**31 - 1,
        "params": {"metrics": ["fid"], "bootstrap": 0, "spectral_bootstrap": 0, "seed": 2**32},
    }
    response = post(service, payload)
    assert response.status_code == 202, response.text
    assert response.json()["generation"] == 2**31 - 1


# --- lineage never crosses projects -------------------------------------------------------------------


def test_a_parent_in_another_project_is_not_found(service) -> None:  # type: ignore[no-untyped-def]
    """A project key may not hang its audit under another project's audit, nor learn that it exists."""
    base = {
        "real": {"uri": service.data["real"]},
        "synthetic": {"uri": service.data["synthetic"]},
        "params": {"metrics": ["fid"], "bootstrap": 0, "spectral_bootstrap": 0},
    }
    alpha_key, beta_key = service.project_key("alpha"), service.project_key("beta")
    alpha_audit = post(service, {**base, "project": "alpha"}, key=alpha_key)
    assert alpha_audit.status_code == 202, alpha_audit.text
    alpha_id = alpha_audit.json()["id"]

    foreign = assert_error(
        post(service, {**base, "project": "beta", "parent_audit_id": alpha_id}, key=beta_key),
        404,
        "not_found",
    )
    unknown = assert_error(
        post(service, {**base, "project": "beta", "parent_audit_id": "0" * 32}, key=beta_key),
        404,
        "not_found",
    )
    # The same answer as for an id that does not exist: nothing tells beta that alpha's audit is there.
    assert foreign["message"].replace(alpha_id, "ID") == unknown["message"].replace("0" * 32, "ID")
    # An admin key gets the same refusal: lineage is per project.
    assert_error(post(service, {**base, "project": "beta", "parent_audit_id": alpha_id}), 404, "not_found")
    child = post(service, {**base, "project": "alpha", "parent_audit_id": alpha_id}, key=alpha_key)
    assert child.status_code == 202, child.text
    assert child.json()["parent_audit_id"] == alpha_id and child.json()["generation"] == 1


# --- what the schema says is what the server does ------------------------------------------------------


def test_a_body_that_is_not_json_is_422_invalid_request(service) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {service.admin_key}", "Content-Type": "application/json"}
    for body in (b"\xff\xfe\x00garbage", b"Fu\x9dW"):  # not UTF-8: FastAPI's own 400 http_error before
        for path in ("/v1/audits", "/v1/projects", "/v1/keys"):
            response = httpx.post(f"{service.url}{path}", content=body, headers=headers)
            error = assert_error(response, 422, "invalid_request")
            assert error["details"]["problems"][0]["field"].startswith("body")


def test_an_undeclared_method_is_405_with_every_allowed_method(service) -> None:  # type: ignore[no-untyped-def]
    for path, allowed in (
        ("/v1/audits", "GET, POST"),
        ("/v1/projects/default/policies", "GET, POST"),
        ("/healthz", "GET"),
        ("/v1/keys/sda_00000000", "DELETE"),
    ):
        for method in ("TRACE", "PUT", "PATCH"):
            response = httpx.request(method, f"{service.url}{path}")
            assert_error(response, 405, "method_not_allowed")
            assert response.headers["allow"] == allowed, (method, path, response.headers)


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("created_before=0.5", 422, "invalid_request"),  # accepted as a Unix timestamp before
        ("created_before=2026-11-23", 422, "invalid_request"),  # a date is not a date-time
        ("created_before=2026-11-23T00:00:00", 422, "invalid_request"),  # no time zone
        ("created_before=2026-02-30T00:00:00Z", 422, "invalid_request"),
        ("created_before=2026-11-23T00:00:00Z", 200, None),
        ("created_after=2026-11-23T01:00:00%2B01:00", 200, None),
        ("created_after=0001-01-01T00:00:00%2B05:00", 200, None),  # before year 1 in UTC: clamped
        ("created_before=9999-12-31T23:59:60-05:00", 200, None),  # a leap second, after year 9999 in UTC
        (f"cursor={'9' * 16}.{'f' * 32}", 200, None),  # any cursor of the documented shape is a position
        ("cursor=bm90IGEgY3Vyc29y", 422, "invalid_request"),
        ("cursor=1.abc", 422, "invalid_request"),
        ("tag=", 422, "invalid_request"),
        ("project=a%2Fb", 422, "invalid_request"),
    ],
)
def test_list_query_parameters_are_what_the_schema_says(
    service, query: str, status: int, code: str | None
) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {service.admin_key}"}
    response = httpx.get(f"{service.url}/v1/audits?{query}", headers=headers)
    if code is None:
        assert response.status_code == status, response.text
    else:
        assert_error(response, status, code)


def test_id_prefixes_and_trend_metrics_follow_the_schema(service) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {service.admin_key}"}
    for path in ("/v1/audits/0", "/v1/audits/abc", "/v1/audits/0/report", "/v1/audits/zzzzzzzz/cancel"):
        method = "POST" if path.endswith("cancel") else "GET"
        response = httpx.request(method, f"{service.url}{path}", headers=headers)
        assert_error(response, 422, "invalid_request")  # the pattern: 6+ hex characters
    assert_error(httpx.get(f"{service.url}/v1/audits/abcdef", headers=headers), 404, "not_found")
    trends = f"{service.url}/v1/projects/default/trends"
    assert_error(httpx.get(f"{trends}?metric=", headers=headers), 422, "unknown_name")
    assert_error(httpx.get(f"{trends}?metric=fid&protocol=", headers=headers), 422, "invalid_request")
    spec = httpx.get(f"{service.url}/openapi.json").json()
    metric = next(
        p
        for p in spec["paths"]["/v1/projects/{project}/trends"]["get"]["parameters"]
        if p["name"] == "metric"
    )
    assert "fid" in metric["schema"]["enum"] and "" not in metric["schema"]["enum"]


def test_an_empty_policy_is_refused_and_the_schema_says_so(service) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {service.admin_key}"}
    url = f"{service.url}/v1/projects/default/policies"
    for body in (
        {},
        {"rules": []},
        {"rules": [{"metric": "fid"}]},
        {"rules": [{"metric": "fid", "min": None}]},
    ):
        assert_error(
            httpx.post(url, json={"name": "gate", "body": body}, headers=headers), 422, "invalid_policy"
        )
    spec = httpx.get(f"{service.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["PolicyBody"]["required"] == ["rules"]
    assert schemas["PolicyBody"]["properties"]["rules"]["minItems"] == 1
    absolute, relative = schemas["RuleCreate"]["anyOf"]
    assert {"required": ["min"], "properties": {"min": {"type": "number"}}} in absolute["anyOf"]
    assert relative["required"] == ["baseline"] and relative["properties"]["min"] == {"type": "null"}


def test_every_route_documents_its_error_answers_as_json(service) -> None:  # type: ignore[no-untyped-def]
    spec = httpx.get(f"{service.url}/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and path != "/readyz":
                    content = response["content"]
                    assert list(content) == ["application/json"], (method, path, status, content)
                    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    report = spec["paths"]["/v1/audits/{audit_id}/report"]["get"]["responses"]
    assert list(report["200"]["content"]) == ["text/html"]
    assert {"401", "403", "404", "409", "422", "500", "503"} <= set(report)
    headers = {"Authorization": f"Bearer {service.admin_key}"}
    response = httpx.get(f"{service.url}/v1/audits/{'a' * 32}/report", headers=headers)
    assert response.headers["content-type"] == "application/json"
    assert_error(response, 404, "not_found")
    assert "Retry-After" in spec["paths"]["/v1/audits"]["post"]["responses"]["503"]["headers"]


def test_a_project_keys_id_prefixes_match_only_its_own_audits(service) -> None:  # type: ignore[no-untyped-def]
    """An ambiguous prefix used to name two audits of any project in its error message."""
    from auditor.db import queries

    alpha, beta = "abcdef01" + "0" * 24, "abcdef02" + "0" * 24
    with service.context.session() as session:
        for audit_id, project in ((alpha, "alpha"), (beta, "beta")):
            queries.create_audit(
                session, audit_id=audit_id, project=project, spec={}, extractor="precomputed", state="queued"
            )
    beta_headers = {"Authorization": f"Bearer {service.project_key('beta')}"}
    mine = httpx.get(f"{service.url}/v1/audits/abcdef", headers=beta_headers)
    assert mine.status_code == 200 and mine.json()["id"] == beta, mine.text
    assert alpha not in mine.text
    assert_error(httpx.get(f"{service.url}/v1/audits/abcdef01", headers=beta_headers), 404, "not_found")
    admin = {"Authorization": f"Bearer {service.admin_key}"}
    ambiguous = assert_error(httpx.get(f"{service.url}/v1/audits/abcdef", headers=admin), 422, "bad_input")
    assert "ambiguous" in ambiguous["message"]
