"""The operator's maxima apply to submissions: a caller may lower them, never raise them."""

from __future__ import annotations

import httpx
import pytest


def submit(service, params: dict[str, object]) -> httpx.Response:  # type: ignore[no-untyped-def]
    payload = {
        "real": {"uri": service.data["real"]},
        "synthetic": {"uri": service.data["synthetic"]},
        "params": params,
    }
    return httpx.post(
        f"{service.url}/v1/audits", json=payload, headers={"Authorization": f"Bearer {service.admin_key}"}
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bootstrap": 10_001}, "params.bootstrap"),
        ({"spectral_bootstrap": 201}, "params.spectral_bootstrap"),
        ({"kid_subsets": 1_001}, "params.kid_subsets"),
        ({"memory_budget_mb": 100_000}, "params.memory_budget_mb"),
    ],
)
def test_a_parameter_above_the_operators_maximum_is_refused(service, params, field) -> None:  # type: ignore[no-untyped-def]
    response = submit(service, params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "limit_exceeded" and error["details"]["field"] == field, error


def test_numbers_beyond_the_schema_are_422_not_500(service) -> None:  # type: ignore[no-untyped-def]
    for params in ({"seed": 2**70}, {"bootstrap": 10**12}, {"nearest_k": 10**9}):
        response = submit(service, params)
        assert response.status_code == 422, (params, response.text)


def test_a_lower_value_is_accepted(service) -> None:  # type: ignore[no-untyped-def]
    response = submit(service, {"bootstrap": 50, "spectral_bootstrap": 0, "memory_budget_mb": 64})
    assert response.status_code in (200, 201, 202), response.text
