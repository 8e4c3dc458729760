"""``create_app``: routes, the error envelope, request limits, CORS and metrics around one context.

Every error answers ``{"error": {"code", "message", "details"}}``: the auditor's own errors with their
HTTP status, request validation as 422 ``invalid_request`` listing each field, an oversized body as 413
``request_too_large``, an unknown route as 404 ``not_found``, and anything unexpected as 500
``internal_error`` (logged with its traceback, never sent to the client).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auditor import __version__
from auditor.api.observability import RequestMetrics, RequestMetricsMiddleware, ServiceCollector
from auditor.api.routes import audits, health, keys, projects
from auditor.api.schemas import ErrorBody
from auditor.errors import AuditorError
from auditor.service.context import ServiceContext

log = logging.getLogger(__name__)

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (401, "Missing or unknown API key (code unauthorized)."),
        (403, "The key may not access this project or action (code forbidden)."),
        (404, "Unknown audit, project, policy or dataset."),
        (409, "Conflicts with the audit's state."),
        (413, "Request body too large (code request_too_large)."),
        (422, "Invalid request: unknown extractor or metric, bad reference, invalid policy, ..."),
    )
}


def _error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> JSONResponse:
    # Details may carry exception objects (pydantic's error context): render anything unknown as text.
    safe_details = json.loads(json.dumps(details or {}, default=str))
    return JSONResponse({"error": {"code": code, "message": message, "details": safe_details}}, status)


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413 ``request_too_large``: at once from Content-Length, or,
    for a chunked upload, as soon as what was read passes the limit (never buffering more)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_bytes
        response = _error(413, "request_too_large", f"request body over {limit} bytes", {"limit": limit})
        await response(scope, receive, send)


def create_app(context: ServiceContext) -> FastAPI:
    app = FastAPI(
        title="Synthetic data auditor",
        version=__version__,
        description="Audit synthetic datasets against real data: fidelity, diversity, collapse, "
        "memorization; gates and trends. Authenticate with `Authorization: Bearer <api key>`.",
        responses=_ERROR_RESPONSES,
    )
    app.state.context = context
    app.state.registry = CollectorRegistry()
    app.state.registry.register(ServiceCollector(context))
    request_metrics = RequestMetrics(app.state.registry)

    @app.exception_handler(AuditorError)
    async def _auditor_error(_: Request, exc: AuditorError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("request failed: %s", exc.message)
        return _error(exc.http_status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(part) for part in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return _error(422, "invalid_request", f"invalid request: {summary}", {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            exc.status_code, "http_error"
        )
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, "internal_error", "internal error; the server log has the details")

    # Pure ASGI middlewares (not ``@app.middleware("http")``, which costs a task group and memory
    # streams per request); the last added is the outermost: metrics see the 413s too.
    app.add_middleware(BodyLimitMiddleware, max_bytes=context.settings.max_request_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=request_metrics)
    origins = context.settings.cors_origin_list()
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Idempotency-Key", "Content-Type"],
        )
    app.include_router(health.router)
    app.include_router(projects.router)
    app.include_router(audits.router)
    app.include_router(keys.router)
    return app
