"""``create_app``: routes, the error envelope, request limits, CORS and metrics around one context.

Every error answers ``{"error": {"code", "message", "details"}}``: the auditor's own errors with their
HTTP status, request validation (and a body that is not JSON) as 422 ``invalid_request`` listing each
field, an oversized body as 413 ``request_too_large``, an unknown route as 404 ``not_found``, a method a
route does not have as 405 ``method_not_allowed`` with ``Allow``, an unreachable database as 503
``service_unavailable`` with ``Retry-After``, and anything unexpected as 500 ``internal_error`` (logged
with its traceback, never sent to the client).

The interactive documentation (``/docs``, ``/redoc``) is served from assets shipped in the package
(``auditor/api/static``), so it works without internet access; ``/`` is a small landing page.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auditor import __version__
from auditor.api.observability import RequestMetrics, RequestMetricsMiddleware, ServiceCollector
from auditor.api.openapi import deployment_openapi
from auditor.api.routes import audits, health, keys, projects, waivers, webhooks
from auditor.errors import AuditorError
from auditor.service.context import ServiceContext

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
# What a 503 tells clients to wait before retrying (seconds).
RETRY_AFTER_S = 5
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _error(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    # Details may carry exception objects (pydantic's error context): render anything unknown as text.
    safe_details = json.loads(json.dumps(details or {}, default=str))
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": safe_details}}, status, headers=headers
    )


def _error_headers(status: int) -> dict[str, str] | None:
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if status == 503:
        return {"Retry-After": str(RETRY_AFTER_S)}
    return None


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves on the request's path, sorted (for a 405's Allow).

    Asked of the routes themselves (``matches`` with each method), so routers included in routers
    count; a mount (the static files) serves GET and HEAD.
    """
    # Inside a mount the scope's root_path includes the mount's path: match from the application's.
    scope = {**scope, "root_path": scope.get("app_root_path", scope.get("root_path", ""))}
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Mount):
            if route.matches(scope)[0] != Match.NONE:
                methods |= {"GET", "HEAD"}
            continue
        methods |= {m for m in _METHODS if route.matches({**scope, "method": m})[0] == Match.FULL}
    return sorted(methods)


def database_unavailable(exc: BaseException) -> bool:
    """Whether a database error means "cannot reach or use the server now" (retryable: 503), rather
    than a bug in a query (500): connection refused or lost, pool exhausted, SQLite locked."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeoutError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


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
        if scope["method"] not in _BODY_METHODS:  # no route reads the body of any other method
            await self.app(scope, receive, send)
            return
        length = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
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
        "memorization; gates and trends. Authenticate with `Authorization: Bearer <api key>` (or "
        '`X-API-Key`). Every error answers `{"error": {"code", "message", "details"}}`.',
        docs_url=None,  # served below from the package's own assets, not a CDN
        redoc_url=None,
        # operationId = the handler's name (get_audit, create_policy, ...): what the links refer to,
        # and what generated clients call their methods.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.context = context
    app.state.registry = CollectorRegistry()
    app.state.registry.register(ServiceCollector(context))
    request_metrics = RequestMetrics(app.state.registry)

    @app.exception_handler(AuditorError)
    async def _auditor_error(_: Request, exc: AuditorError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("request failed: %s", exc.message)
        return _error(exc.http_status, exc.code, exc.message, exc.details, _error_headers(exc.http_status))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(part) for part in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return _error(422, "invalid_request", f"invalid request: {summary}", {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot parse (bytes that are not UTF-8 JSON, a broken form):
            # the same 422 as a body that parses but does not validate.
            problems = [{"field": "body", "message": str(exc.detail)}]
            return _error(
                422, "invalid_request", f"invalid request: body: {exc.detail}", {"problems": problems}
            )
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            exc.status_code, "http_error"
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route on the path; a path served by
            # several routes (GET and POST /v1/audits) has all of theirs.
            headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return _error(exc.status_code, code, str(exc.detail), headers=headers or None)

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        if database_unavailable(exc):
            log.warning("database unavailable: %s", exc)
            return _error(
                503,
                "service_unavailable",
                "the database is unavailable; retry shortly",
                {"retry_after_s": RETRY_AFTER_S},
                _error_headers(503),
            )
        log.error("database error", exc_info=exc)
        return _error(500, "internal_error", "internal error; the server log has the details")

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
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Idempotency-Key", "Content-Type"],
        )
    app.include_router(health.router)
    app.include_router(projects.router)
    app.include_router(audits.router)
    app.include_router(keys.router)
    app.include_router(webhooks.router)
    app.include_router(waivers.router)
    _add_documentation(app)
    app.openapi = deployment_openapi(app, context.settings)  # type: ignore[method-assign]
    return app


def _add_documentation(app: FastAPI) -> None:
    """``/docs`` and ``/redoc`` on the vendored assets (``/static``), and the landing page ``/``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def prefix(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/swagger-ui/favicon-32x32.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}/static/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}/static/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )

    @app.get("/", include_in_schema=False)
    async def landing(request: Request) -> HTMLResponse:
        return HTMLResponse(landing_page(prefix(request), app.title))


def landing_page(root: str, title: str) -> str:
    """A plain page until the dashboard exists: what this is, where the docs are, how to start."""
    root = html.escape(root)
    links = "".join(
        f'<li><a href="{root}{path}">{html.escape(label)}</a></li>'
        for path, label in (
            ("/docs", "API documentation (Swagger UI)"),
            ("/redoc", "API reference (ReDoc)"),
            ("/openapi.json", "OpenAPI document"),
            ("/healthz", "Liveness (/healthz)"),
            ("/readyz", "Readiness: database and broker (/readyz)"),
        )
    )
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="icon" href="{root}/static/swagger-ui/favicon-32x32.png">
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;
padding:0 1rem;line-height:1.5}}
pre{{background:#f4f4f4;padding:.75rem;overflow-x:auto}}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Version {html.escape(__version__)}. Audits synthetic datasets against real data: fidelity, diversity,
collapse and memorization, with confidence intervals, gates and history.</p>
<ul>{links}</ul>
<h2>Quickstart (CLI)</h2>
<pre>export AUDITOR_API_URL=http://HOST:PORT
export AUDITOR_API_KEY=sda_...        # auditor keys create --project NAME
ID=$(auditor submit --real data/real.npy --synthetic data/gen.npy --project NAME)
auditor gate "$ID"                    # exit 0 pass, 1 fail, 2 error</pre>
</body>
</html>
"""
