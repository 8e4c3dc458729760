from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.services import ApiServer, write_embeddings

from auditor.client import AuditorClient
from auditor.config import Settings
from auditor.db import access
from auditor.service.context import ServiceContext
from auditor.service.dispatch import InProcessDispatcher


@dataclass
class Service:
    context: ServiceContext
    url: str
    admin_key: str
    data: dict[str, str]
    home: Path

    def client(self, key: str | None = None) -> AuditorClient:
        return AuditorClient(self.url, api_key=key if key is not None else self.admin_key)

    def project_key(self, project: str) -> str:
        with self.context.session() as session:
            return access.create_api_key(session, name="test", project=project).secret


@pytest.fixture
def service(migrated_database_url: str, tmp_path: Path) -> Iterator[Service]:
    """The API in embedded mode (in-process worker) on a real uvicorn server, SQLite and PostgreSQL."""
    from auditor.api import create_app

    settings = Settings(
        database_url=migrated_database_url,
        home=tmp_path / "home",
        max_request_bytes=64 * 1024,
        cors_origins="https://dashboard.example",
        data_roots=str(tmp_path),  # datasets are confined to the test's directory
    )
    context = ServiceContext.from_settings(settings, migrate=False)
    dispatcher = InProcessDispatcher(context)
    context.dispatcher = dispatcher
    with context.session() as session:
        admin = access.create_api_key(session, name="admin", is_admin=True).secret
    data = write_embeddings(tmp_path / "data")
    try:
        with ApiServer(create_app(context)) as server:
            yield Service(context=context, url=server.url, admin_key=admin, data=data, home=tmp_path)
    finally:
        dispatcher.close()
        context.engine.dispose()
