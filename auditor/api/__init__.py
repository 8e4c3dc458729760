"""The HTTP API (FastAPI, versioned under ``/v1``): a thin shell over the pipeline and the queries."""

from auditor.api.app import create_app

__all__ = ["create_app"]
