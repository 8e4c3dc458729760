"""The OpenAPI document of one deployment: the schema's absolute bounds, lowered to the operator's maxima.

The request models (:mod:`auditor.api.schemas`) carry the bounds every deployment shares. An operator
lowers the costly ones (``AUDITOR_MAX_*``, ``AUDITOR_MEMORY_BUDGET_MB``; see
:mod:`auditor.pipeline.limits` and :class:`auditor.datasets.options.DatasetLimits`), and the server
refuses more with 422 ``limit_exceeded``: each server's document says its own maxima, so what it
documents is what it accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from auditor.config import Settings
from auditor.pipeline.limits import PARAMETER_MAXIMA

# Dataset options with an operator ceiling -> the Settings attribute holding it.
DATASET_OPTION_MAXIMA = {"max_samples": "max_samples", "max_member_bytes": "max_member_bytes"}


def lower_maximum(prop: dict[str, Any], maximum: int | None, setting: str) -> None:
    """Lower the ``maximum`` of an integer property (or of the integer branch of ``int | None``)."""
    if maximum is None:
        return
    branches = prop.get("anyOf", [prop])
    for branch in branches:
        if branch.get("type") == "integer":
            branch["maximum"] = min(branch.get("maximum", maximum), maximum)
    note = f"At most {maximum} on this server (AUDITOR_{setting.upper()})."
    prop["description"] = f"{prop['description']} {note}" if prop.get("description") else note


def apply_operator_limits(document: dict[str, Any], settings: Settings) -> None:
    schemas = document.get("components", {}).get("schemas", {})
    params = schemas.get("MetricParamsCreate", {}).get("properties", {})
    for name, setting in PARAMETER_MAXIMA.items():
        if name in params:
            lower_maximum(params[name], getattr(settings, setting), setting)
    options = (
        schemas.get("DatasetRefCreate", {}).get("properties", {}).get("options", {}).get("properties", {})
    )
    for name, setting in DATASET_OPTION_MAXIMA.items():
        if name in options:
            lower_maximum(options[name], getattr(settings, setting), setting)


def deployment_openapi(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` with the operator's maxima (built once, like FastAPI's own)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()  # FastAPI caches it in app.openapi_schema: patched in place, once
            apply_operator_limits(document, settings)
        return app.openapi_schema or build()

    return openapi
