"""A small Python client of the auditor API, for data pipelines: submit, wait, gate.

    from auditor.client import AuditorClient

    client = AuditorClient("http://auditor:8000", api_key="sda_...")
    audit = client.submit({"project": "faces", "real": {"uri": "/data/real.npy"},
                           "synthetic": {"uri": "/data/gen3.npy"}, "policy_name": "release"},
                          idempotency_key="faces-gen3")
    done = client.wait(audit["id"])
    if done["passed"] is False: ...

Errors come back as :class:`ApiError` with the server's machine-readable ``code`` and HTTP ``status``;
an unreachable server is :class:`~auditor.errors.ServiceUnavailableError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from auditor.errors import AuditorError, ServiceUnavailableError

TERMINAL_STATES = ("succeeded", "failed", "cancelled")
# Outside the class, whose own ``list`` method would shadow the builtin in its annotations.
JsonObjects = list[dict[str, Any]]
Names = list[str]


class ApiError(AuditorError):
    """An error answer of the API: ``code`` and ``status`` as the server sent them."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.code = code
        self.http_status = status
        # Exit code: the caller's input was refused (2) or the service failed (3).
        self.exit_code = 2 if 400 <= status < 500 else 3


class WaitTimeoutError(AuditorError):
    code = "wait_timeout"
    exit_code = 3


class AuditorClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AuditorClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- calls ------------------------------------------------------------------------------------------

    def submit(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/v1/audits", json=body, headers=headers)

    def get(self, audit_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/audits/{audit_id}")

    def list(self, **filters: Any) -> dict[str, Any]:
        return self._json("GET", "/v1/audits", params={k: v for k, v in filters.items() if v is not None})

    def cancel(self, audit_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/audits/{audit_id}/cancel")

    def report(self, audit_id: str) -> str:
        return self._request("GET", f"/v1/audits/{audit_id}/report").text

    def samples(self, audit_id: str, **query: Any) -> dict[str, Any]:
        """One page of an audit's per-sample evidence: ``side``, ``flag``, ``mode``, ``order``, ``limit``,
        ``cursor`` as ``GET /v1/audits/{id}/samples`` takes them."""
        params = {k: v for k, v in query.items() if v is not None}
        return self._json("GET", f"/v1/audits/{audit_id}/samples", params=params)

    def samples_parquet(self, audit_id: str, **query: Any) -> bytes:
        """Every sample matching the filters, as parquet bytes (``format=parquet``)."""
        params = {k: v for k, v in query.items() if v is not None and k not in ("limit", "cursor")}
        response = self._request(
            "GET", f"/v1/audits/{audit_id}/samples", params={**params, "format": "parquet"}
        )
        return response.content

    def trends(self, project: str, metric: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/projects/{project}/trends", params={"metric": metric})

    # --- waivers ----------------------------------------------------------------------------------------

    def add_waiver(
        self, project: str, metric: str, reason: str, *, days: float = 30.0, audit_id: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"metric": metric, "reason": reason, "days": days}
        if audit_id is not None:
            body["audit_id"] = audit_id
        return self._json("POST", f"/v1/projects/{quote(project, safe='')}/waivers", json=body)

    def waivers(self, project: str, *, active: bool = False) -> JsonObjects:
        params = {"active": "true"} if active else None
        return self._json_list("GET", f"/v1/projects/{quote(project, safe='')}/waivers", params=params)

    def revoke_waiver(self, project: str, waiver_id: str) -> None:
        self._request("DELETE", f"/v1/projects/{quote(project, safe='')}/waivers/{waiver_id}")

    # --- webhooks ---------------------------------------------------------------------------------------

    def add_webhook(
        self, project: str, url: str, *, events: Names | None = None, secret: str | None = None
    ) -> dict[str, Any]:
        """Subscribe ``url`` to the project's events (default: all); the answer has the signing secret,
        the only time it is shown."""
        body: dict[str, Any] = {"url": url}
        if events:
            body["events"] = events
        if secret is not None:
            body["secret"] = secret
        return self._json("POST", f"/v1/projects/{quote(project, safe='')}/webhooks", json=body)

    def webhooks(self, project: str) -> JsonObjects:
        return self._json_list("GET", f"/v1/projects/{quote(project, safe='')}/webhooks")

    def remove_webhook(self, project: str, webhook_id: str) -> None:
        self._request("DELETE", f"/v1/projects/{quote(project, safe='')}/webhooks/{webhook_id}")

    def webhook_deliveries(
        self, project: str, webhook_id: str, *, state: str | None = None, limit: int | None = None
    ) -> JsonObjects:
        """A subscription's deliveries, newest first, each with its attempts."""
        params = {k: v for k, v in (("state", state), ("limit", limit)) if v is not None}
        return self._json_list(
            "GET", f"/v1/projects/{quote(project, safe='')}/webhooks/{webhook_id}/deliveries", params=params
        )

    def wait(
        self,
        audit_id: str,
        *,
        timeout: float | None = None,
        poll_s: float = 1.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the audit is succeeded, failed or cancelled; returns its final state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            audit = self.get(audit_id)
            if on_update is not None:
                on_update(audit)
            if audit["state"] in TERMINAL_STATES:
                return audit
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"audit {audit_id} still {audit['state']} after {timeout:.0f} s",
                    details={"state": audit["state"]},
                )
            time.sleep(poll_s)

    # --- plumbing ---------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnavailableError(
                f"cannot reach the auditor API at {self._http.base_url}: {exc}"
            ) from exc
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise ApiError(response.status_code, error["code"], error["message"], error.get("details"))
            except (ValueError, KeyError, TypeError):
                raise ApiError(response.status_code, "http_error", response.text[:500]) from None
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        payload = self._request(method, path, **kwargs).json()
        if not isinstance(payload, dict):
            raise ApiError(500, "bad_response", f"expected a JSON object from {path}")
        return payload

    def _json_list(self, method: str, path: str, **kwargs: Any) -> JsonObjects:
        payload = self._request(method, path, **kwargs).json()
        if not isinstance(payload, list):
            raise ApiError(500, "bad_response", f"expected a JSON array from {path}")
        return payload


__all__ = ["ApiError", "AuditorClient", "WaitTimeoutError"]
