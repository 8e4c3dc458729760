"""The HTTP API (FastAPI, versioned under ``/v1``): a thin shell over the pipeline and the queries."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from auditor.service.context import ServiceContext


def create_app(context: ServiceContext) -> FastAPI:
    """See :func:`auditor.api.app.create_app` (imported on use: the schemas import without the app)."""
    from auditor.api.app import create_app as build

    return build(context)


__all__ = ["create_app"]
