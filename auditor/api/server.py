"""The API as an ASGI application factory for process managers (``uvicorn --factory``, ``serve --workers``).

    uvicorn auditor.api.server:build_app --factory --workers 4

Each process builds its own context from the environment (``AUDITOR_*``) with the Celery dispatcher:
several API processes need a broker, since the embedded in-process worker lives in one process.
"""

from __future__ import annotations

from fastapi import FastAPI

from auditor.api.app import create_app
from auditor.config import get_settings
from auditor.errors import BadInputError
from auditor.service.context import ServiceContext
from auditor.service.dispatch import CeleryDispatcher


def build_app() -> FastAPI:
    settings = get_settings()
    if settings.broker_url is None:
        raise BadInputError("the multi-process API needs AUDITOR_BROKER_URL; use `auditor serve` without it")
    from workers.celery_app import make_celery

    context = ServiceContext.from_settings(settings)
    context.dispatcher = CeleryDispatcher(make_celery(settings))
    return create_app(context)
