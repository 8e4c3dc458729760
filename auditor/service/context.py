"""What every service process (API, worker, in-process executor) holds: settings, DB, store, dispatcher."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from auditor.artifacts import ArtifactStore
from auditor.config import Settings
from auditor.db.migrate import ensure_database
from auditor.db.session import make_engine, make_session_factory, session_scope


class Dispatcher(Protocol):
    """Hands work to whoever executes it: Celery queues, or a thread in this process."""

    def enqueue_start(self, audit_id: str) -> None: ...

    def enqueue_embed(self, audit_id: str, side: str, index: int = 0, count: int = 1) -> None: ...

    def enqueue_score(self, audit_id: str) -> None: ...

    def ping(self) -> None:
        """Raise when the broker cannot be reached (readiness)."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class ServiceContext:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    store: ArtifactStore
    dispatcher: Dispatcher | None = None
    name: str = field(default_factory=worker_name)
    principal_cache: Any = None  # auditor.api.deps.PrincipalCache, built on the first request
    project_ids: dict[str, int] = field(default_factory=dict)  # project name -> id (see submit.py)

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = True) -> ServiceContext:
        url = settings.resolved_database_url()
        if migrate:
            ensure_database(url)
        engine = make_engine(url)
        return cls(
            settings=settings,
            engine=engine,
            session_factory=make_session_factory(engine),
            store=ArtifactStore(settings.resolved_artifact_root()),
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.session_factory) as session:
            yield session

    def require_dispatcher(self) -> Dispatcher:
        if self.dispatcher is None:
            raise RuntimeError("this process has no dispatcher (it cannot enqueue work)")
        return self.dispatcher
