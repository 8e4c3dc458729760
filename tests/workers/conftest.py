from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from helpers.databases import reset_postgres_database
from helpers.services import ApiServer, RedisServer, WorkerProcess, service_env

from auditor.client import AuditorClient
from auditor.config import Settings
from auditor.db import access
from auditor.db.migrate import upgrade_database
from auditor.service.context import ServiceContext
from auditor.service.dispatch import CeleryDispatcher
from workers.celery_app import make_celery

# Small timeouts so that recovery happens within a test: a worker is presumed dead after 3 s without
# a heartbeat, and every worker looks for such audits every second.
WORKER_SETTINGS = {"AUDITOR_HEARTBEAT_TIMEOUT_S": "3", "AUDITOR_SWEEP_INTERVAL_S": "1"}


@dataclass
class Cluster:
    """The API (in this process, Celery dispatcher) + worker subprocesses on real Redis and PostgreSQL."""

    context: ServiceContext
    redis: RedisServer
    url: str
    admin_key: str
    home: Path
    env: dict[str, str]
    workers: list[WorkerProcess] = field(default_factory=list)

    def client(self) -> AuditorClient:
        return AuditorClient(self.url, api_key=self.admin_key)

    def start_worker(self, queues: str = "cpu,gpu") -> WorkerProcess:
        worker = WorkerProcess(self.env, self.home / f"worker-{len(self.workers)}.log", queues).start()
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(w.log_path.read_text()[-4000:] for w in self.workers if w.log_path.exists())


@pytest.fixture
def cluster(postgres_database_url: str, redis_server: RedisServer, tmp_path: Path) -> Iterator[Cluster]:
    from auditor.api import create_app

    reset_postgres_database(postgres_database_url)
    upgrade_database(postgres_database_url)
    if redis_server.process is None:  # a previous test stopped it and failed before restarting it
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushall()
    env = service_env(postgres_database_url, redis_server.url, tmp_path / "home", **WORKER_SETTINGS)
    settings = Settings(
        database_url=postgres_database_url,
        broker_url=redis_server.url,
        home=tmp_path / "home",
        heartbeat_timeout_s=3,
        sweep_interval_s=1,
    )
    context = ServiceContext.from_settings(settings, migrate=False)
    context.dispatcher = CeleryDispatcher(make_celery(settings))
    with context.session() as session:
        admin = access.create_api_key(session, name="admin", is_admin=True).secret
    cluster = None
    try:
        with ApiServer(create_app(context)) as server:
            cluster = Cluster(context, redis_server, server.url, admin, tmp_path, env)
            yield cluster
    finally:
        if cluster is not None:
            for worker in cluster.workers:
                worker.stop()
        context.engine.dispose()
