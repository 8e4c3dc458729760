"""Engines and sessions: one session per unit of work, committed at the edge (:func:`session_scope`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# The CLI, a worker and the API may share one SQLite file: wait for a lock rather than fail at once.
SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 10


def create_private_file(path: Path) -> None:
    """Create ``path`` empty, readable by its owner only (0600), unless it exists already.

    The SQLite file holds every key hash and result: created by SQLite itself it would be 0644 (world
    readable) until someone tightened it. An empty file is a valid SQLite database, and SQLite gives its
    journal and WAL files the database file's mode. An existing file is left as its owner set it.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except (FileExistsError, FileNotFoundError):  # exists already / no such directory: SQLite says so
        return
    os.close(descriptor)


def make_engine(url: str, *, migrating: bool = False) -> Engine:
    """An engine for ``url``; for SQLite also: parent directory and a private (0600) file created, foreign
    keys on, real transactions.

    Every SQLite transaction starts with ``BEGIN IMMEDIATE`` (see below). ``migrating`` (used by
    :mod:`auditor.db.migrate`, SQLite only) leaves foreign keys off: batch mode rebuilds a table by
    copy-and-drop, and with enforcement on the DROP would fire ON DELETE CASCADE on the rows that
    reference it. The migration checks integrity itself.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pre_ping: a long-lived API/worker process outlives server restarts and idle-connection reaping.
        # The pool covers the API's request threads (each request holds at most one connection at a
        # time), so a burst queues in the threadpool, not on a pool timeout.
        # connect_timeout (unless the URL sets one): an unreachable server fails a request (503) or a
        # start in seconds, not after the operating system's TCP timeout (minutes).
        connect_args: dict[str, Any] = {}
        if parsed.get_driver_name() in ("psycopg", "psycopg2") and "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        return create_engine(
            url, pool_pre_ping=True, pool_size=20, max_overflow=20, connect_args=connect_args
        )

    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        create_private_file(Path(database))
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S})
    # IMMEDIATE everywhere: the API, its in-process worker and heartbeat threads (and a CLI beside them)
    # write to one file. A deferred transaction that reads and then writes cannot wait for the lock
    # (SQLite answers "database is locked" at once to avoid a deadlock); an immediate one takes the
    # write lock up front and waits up to the busy timeout. SQLite is the single-host default, where
    # serialised transactions cost little; PostgreSQL is the concurrent deployment.
    begin = "BEGIN IMMEDIATE"
    foreign_keys = "OFF" if migrating else "ON"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy: the sqlite3 module's legacy mode never BEGINs before
        # SELECT or DDL, which breaks SAVEPOINT (used by get-or-create) and rollback of DDL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # SQLite ignores foreign keys (and so ON DELETE CASCADE) unless asked, per connection.
        cursor.execute(f"PRAGMA foreign_keys = {foreign_keys}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: rows returned from a scope stay readable after it commits (the CLI prints
    # them, the pipeline reads the generation it was given); sessions are short, so staleness is moot.
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
