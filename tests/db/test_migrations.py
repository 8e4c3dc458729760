"""Migrations on both backends: round trip, schema == models, idempotent ensure_database."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from auditor.db.base import Base
from auditor.db.migrate import (
    current_revisions,
    downgrade_database,
    ensure_database,
    head_revisions,
    migrations_dir,
    upgrade_database,
)
from auditor.db.session import make_engine
from auditor.errors import AuditorError

TABLES = {
    "projects",
    "datasets",
    "audits",
    "metric_values",
    "audit_events",
    "api_keys",
    "policies",
    "audit_artifacts",
    "webhooks",
    "webhook_deliveries",
    "webhook_attempts",
    "waivers",
}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _schema_diff(url: str, metadata: sa.MetaData) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    assert current_revisions(database_url) == ()
    upgrade_database(database_url)
    assert _tables(database_url) == TABLES
    assert current_revisions(database_url) == head_revisions()

    downgrade_database(database_url, "base")
    assert _tables(database_url) == set()
    assert current_revisions(database_url) == ()

    upgrade_database(database_url, "head")
    assert _tables(database_url) == TABLES


def test_migrated_schema_matches_models(migrated_database_url: str) -> None:
    assert _schema_diff(migrated_database_url, Base.metadata) == []


def test_schema_comparison_detects_drift(migrated_database_url: str) -> None:
    # Guards the test above: the comparison must see types, columns and indexes, not only tables.
    drifted = sa.MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    audits = drifted.tables["audits"]
    audits.append_column(sa.Column("extra", sa.Integer()))
    audits.c.extractor.type = sa.String(50)
    sa.Index("ix_audits_extra", audits.c.extra)

    # Plain changes come as tuples ("add_column", ...); modifications as lists of such tuples.
    diffs = _schema_diff(migrated_database_url, drifted)
    kinds = {diff[0] if isinstance(diff, tuple) else diff[0][0] for diff in diffs}
    assert {"add_column", "modify_type", "add_index"} <= kinds


def test_ensure_database_is_idempotent_and_cheap(database_url: str) -> None:
    ensure_database(database_url)
    assert _tables(database_url) == TABLES
    start = time.perf_counter()
    for _ in range(3):
        ensure_database(database_url)
    # At head it only reads alembic_version: no env.py run, no lock.
    assert (time.perf_counter() - start) / 3 < 0.5
    assert current_revisions(database_url) == head_revisions()


def test_ensure_database_refuses_a_newer_schema(migrated_database_url: str) -> None:
    engine = make_engine(migrated_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = 'fromthefuture'"))
    finally:
        engine.dispose()
    with pytest.raises(AuditorError, match="fromthefuture"):
        ensure_database(migrated_database_url)


def test_migrations_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'auditor.db'}"
    ensure_database(url)
    assert _tables(url) == TABLES
    assert (migrations_dir() / "env.py").is_file()
    assert not (elsewhere / "alembic.ini").exists()


def test_offline_sql_renders_for_postgres() -> None:
    # `alembic upgrade --sql` path of env.py (no database needed).
    import io

    from alembic import command

    from auditor.db.migrate import alembic_config

    buffer = io.StringIO()
    config = alembic_config("postgresql+psycopg://user:p%40ss@localhost/db")
    config.output_buffer = buffer
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    assert "CREATE TABLE audits" in sql
    assert "ON DELETE CASCADE" in sql
