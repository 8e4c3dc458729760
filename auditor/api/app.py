"""``create_app``: routes, the error envelope, request limits, CORS and metrics around one context.

Every error answers ``{"error": {"code", "message", "details"}}``: the auditor's own errors with their
HTTP status, request validation as 422 ``invalid_request`` listing each field, an oversized body as 413
``request_too_large``, an unknown route as 404 ``not_found``, and anything unexpected as 500
``internal_error`` (logged with its traceback, never sent to the client).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from auditor import __version__
from auditor.api.observability import RequestMetrics, ServiceCollector
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

    max_bytes = context.settings.max_request_bytes

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_bytes):
            return _error(
                413, "request_too_large", f"request body over {max_bytes} bytes", {"limit": max_bytes}
            )
        if length is None and request.method in ("POST", "PUT", "PATCH"):
            # Chunked upload without a length: read at most the limit, then refuse.
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_bytes:
                    return _error(413, "request_too_large", f"request body over {max_bytes} bytes")
            request._body = body
        return await call_next(request)

    app.middleware("http")(request_metrics.middleware)
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
