"""Engines and sessions: SQLite setup, foreign keys, UTC timestamps, strict JSON."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from auditor.db.base import to_strict_json
from auditor.db.models import Audit, Project
from auditor.db.session import make_engine, session_scope


def test_sqlite_engine_creates_the_directory_and_enforces_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a' / 'b' / 'auditor.db'}"
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert (tmp_path / "a" / "b").is_dir()
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(
            Audit(id="f" * 32, project_id=12345, state="running", extractor="e", params={}, spec={}, tags=[])
        )


def test_state_is_checked(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        project = Project(name="p")
        session.add(project)
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(
            Audit(
                id="e" * 32,
                project_id=project.id,
                state="exploded",
                extractor="e",
                params={},
                spec={},
                tags=[],
            )
        )


def test_datetimes_come_back_as_utc(session_factory: sessionmaker[Session]) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 6, 1, 14, 30, 15, 123456, tzinfo=plus_two)
    with session_scope(session_factory) as session:
        session.add(Project(name="tz", created_at=local))
    with session_scope(session_factory) as session:
        stored = session.scalars(sa.select(Project.created_at).where(Project.name == "tz")).one()
    assert stored == local
    assert stored.utcoffset() == timedelta(0)
    assert stored.hour == 12


def test_naive_datetimes_are_refused(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(StatementError, match="naive"), session_scope(session_factory) as session:
        session.add(Project(name="naive", created_at=datetime(2026, 1, 1)))
        session.flush()


def test_strict_json() -> None:
    value = {"a": [1.0, math.nan, -math.inf], "b": (np.float32(0.5), np.int64(3)), 3: Path("x")}
    assert to_strict_json(value) == {"a": [1.0, None, None], "b": [0.5, 3], "3": "x"}


def test_a_new_sqlite_database_is_private_from_the_start(tmp_path: Path) -> None:
    """It holds every key hash and result: SQLite would create it 0644 (world-readable)."""
    import os
    import stat

    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "home" / "auditor.db"
        engine = make_engine(f"sqlite:///{path}")
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
                connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        finally:
            engine.dispose()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # An existing database keeps the mode its owner gave it (a shared file stays shared).
        path.chmod(0o640)
        make_engine(f"sqlite:///{path}").dispose()
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(old_umask)
