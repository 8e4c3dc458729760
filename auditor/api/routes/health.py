"""Liveness, readiness and Prometheus metrics (no API key: scraped and probed by the platform)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from auditor import __version__
from auditor.api.deps import ContextDep
from auditor.api.schemas import HealthPublic, ReadinessPublic

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthPublic)
def healthz() -> HealthPublic:
    """The process answers (liveness)."""
    return HealthPublic(status="ok", version=__version__)


@router.get(
    "/readyz",
    response_model=ReadinessPublic,
    responses={503: {"model": ReadinessPublic, "description": "A dependency is down (status not_ready)."}},
)
def readyz(context: ContextDep) -> JSONResponse:
    """The database and the broker answer (readiness); 503 with what is down otherwise."""
    checks: dict[str, str] = {}
    try:
        with context.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        context.require_dispatcher().ping()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unavailable: {exc}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> PlainTextResponse:
    return PlainTextResponse(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
