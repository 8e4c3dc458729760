"""Real databases for tests: a SQLite file per test and a throwaway PostgreSQL database per test session.

Fixtures (import them into a ``conftest.py`` to use them, as ``tests/db/conftest.py`` does)::

    from helpers.databases import (  # noqa: F401
        database_url, migrated_database_url, postgres_database_url, postgres_server, session_factory,
    )

* ``database_url``: parametrised over ``sqlite`` and ``postgres`` (the latter marked ``postgres``):
  the URL of an *empty* database (no tables), private to the test. Deselect PostgreSQL with
  ``-m "not postgres"``.
* ``migrated_database_url``: the same, migrated to head with :func:`auditor.db.migrate.upgrade_database`.
* ``session_factory``: a ``sessionmaker`` bound to ``migrated_database_url``; use it with
  :func:`auditor.db.session.session_scope`.
* ``postgres_database_url`` (session scope): the URL of this session's PostgreSQL database.
* ``postgres_server`` (session scope): creates and drops uniquely named databases on the server.

The server comes from ``AUDITOR_TEST_POSTGRES_URL`` (default :data:`DEFAULT_POSTGRES_URL`, trust auth).
Each test session creates its own ``auditor_test_<random>`` database and drops it ``WITH (FORCE)`` at the
end, so parallel sessions (xdist workers, two developers, CI shards) never collide. A test that needs
PostgreSQL *fails* when the server is unreachable: a green run must mean both backends were tested.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

POSTGRES_URL_ENV = "AUDITOR_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", pytest.param("postgres", marks=pytest.mark.postgres))


def postgres_admin_url() -> str:
    return os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class PostgresServer:
    """Creates uniquely named databases on one server and drops every one of them on :meth:`close`."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url: URL = make_url(admin_url)
        # AUTOCOMMIT: CREATE/DROP DATABASE cannot run inside a transaction block.
        self._engine = sa.create_engine(
            self.admin_url,
            isolation_level="AUTOCOMMIT",
            poolclass=sa.NullPool,
            connect_args={"connect_timeout": 5},
        )
        self._created: list[str] = []

    def check_reachable(self) -> None:
        try:
            with self._engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError as exc:
            reason = str(exc.orig)
        else:
            return
        # Outside the except block: the message is the whole story, no chained driver traceback.
        pytest.fail(
            f"PostgreSQL is required for tests marked 'postgres' but is unreachable at "
            f"{self.admin_url.render_as_string(hide_password=True)}: {reason}\n"
            f"Start the server, point {POSTGRES_URL_ENV} at one, or deselect with -m 'not postgres'.",
            pytrace=False,
        )

    def create_database(self, prefix: str = "auditor_test") -> str:
        """A new empty database; returns its URL (same driver and credentials as the admin URL)."""
        name = f"{prefix}_{secrets.token_hex(6)}"
        with self._engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        with self._engine.connect() as connection:
            # FORCE (PostgreSQL 13+): a leaked connection from a failed test must not keep it alive.
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self._created:
            self._created.remove(name)

    def close(self) -> None:
        for name in list(self._created):
            self.drop_database(self.admin_url.set(database=name).render_as_string(hide_password=False))
        self._engine.dispose()


def reset_postgres_database(url: str) -> None:
    """Drop everything in the ``public`` schema (cheaper than a new database per test)."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP SCHEMA public CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer(postgres_admin_url())
    try:
        server.check_reachable()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_database_url(postgres_server: PostgresServer) -> str:
    """This test session's own PostgreSQL database (dropped when the session ends)."""
    return postgres_server.create_database()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database private to this test, once per backend."""
    if request.param == "sqlite":
        # A subdirectory that does not exist yet: make_engine must create it.
        return sqlite_url(tmp_path / "db" / "auditor.db")
    url: str = request.getfixturevalue("postgres_database_url")
    reset_postgres_database(url)
    return url


@pytest.fixture
def migrated_database_url(database_url: str) -> str:
    from auditor.db.migrate import upgrade_database

    upgrade_database(database_url)
    return database_url


@pytest.fixture
def session_factory(migrated_database_url: str) -> Iterator[sessionmaker[Session]]:
    from auditor.db.session import make_engine, make_session_factory

    engine = make_engine(migrated_database_url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


# --- result documents -----------------------------------------------------------------------------------


def make_document(
    audit_id: str,
    *,
    project: str = "default",
    metrics: dict[str, float | None] | None = None,
    passed: bool | None = True,
    protocol_fingerprint: str = "0123456789abcdef",
    generation: int | None = None,
    parent_audit_id: str | None = None,
    real_reference: str = "data/real.npy",
    synthetic_reference: str = "data/synthetic_gen0.npy",
    synthetic_fingerprint: str = "sha256:" + "fe" * 32,
    holdout: bool = True,
    total_s: float = 1.25,
) -> dict[str, Any]:
    """A result document shaped like :mod:`auditor.pipeline.result` (schema_version 1), without a run."""
    values = metrics if metrics is not None else {"fid": 12.5, "precision": 0.81, "recall": 0.74}

    def side(reference: str, fingerprint: str, n: int) -> dict[str, Any]:
        return {"reference": reference, "n": n, "dim": 16, "fingerprint": fingerprint, "format": "npy"}

    return {
        "schema_version": 1,
        "audit_id": audit_id,
        "project": project,
        "created_at": "2026-11-23T20:00:00+00:00",
        "real": side(real_reference, "sha256:" + "0a" * 32, 500),
        "synthetic": side(synthetic_reference, synthetic_fingerprint, 400),
        "holdout": side("data/holdout.npy", "sha256:" + "0b" * 32, 200) if holdout else None,
        "extractor": {
            "name": "precomputed",
            "version": "1",
            "dim": 16,
            "weights_sha256": None,
            "preprocessing": {},
        },
        "params": {"nearest_k": 5, "bootstrap": 20, "seed": 0, "confidence": 0.95, "metrics": sorted(values)},
        "protocol": {"fingerprint": protocol_fingerprint, "extractor": "precomputed", "n_real": 500},
        "lineage": {"parent_audit_id": parent_audit_id, "generation": generation},
        "metrics": {
            name: {
                "value": value,
                "ci_low": None if value is None else value * 0.9,
                "ci_high": None if value is None else value * 1.1,
                "baseline": 0.5 if name == "fid" else None,
            }
            for name, value in values.items()
        },
        "warnings": [],
        "details": {"copy_threshold_tau": 0.1, "num_modes": 8},
        "timings": {"load_s": 0.1, "embed_s": 0.05, "score_s": 1.1, "total_s": total_s},
        "device": "cpu",
        "verdict": {"passed": passed, "rules": []},
    }
