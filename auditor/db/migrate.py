"""Alembic, run from code: the CLI migrates its database on every start; tests build schemas this way.

The Alembic ``Config`` is built here, never read from an ini file or the working directory: the
revisions ship inside the installed ``migrations`` package and are located through ``migrations.__file__``.

Each run happens in one transaction on a connection this module opens and hands to ``migrations/env.py``
(``config.attributes["connection"]``), under a lock so concurrent starts (several workers, a CLI next to
the API) do not race: a PostgreSQL advisory lock, or SQLite's write lock (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

import migrations
from auditor.db.session import make_engine
from auditor.errors import AuditorError

# Arbitrary constant shared by every auditor process: the key of the PostgreSQL advisory lock.
_PG_MIGRATION_LOCK_KEY = 0x4155_4449_5430_0001


def migrations_dir() -> Path:
    return Path(migrations.__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """A Config for ``url`` pointing at the installed revisions (no ini file involved)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # '%' is interpolation syntax in ConfigParser; URLs may contain it (percent-encoded passwords).
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revisions() -> tuple[str, ...]:
    return tuple(ScriptDirectory(str(migrations_dir())).get_heads())


def current_revisions(url: str) -> tuple[str, ...]:
    """The revisions the database at ``url`` is at; empty for a database never migrated."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return tuple(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def upgrade_database(url: str, revision: str = "head") -> None:
    _run_locked(url, lambda config: command.upgrade(config, revision))


def downgrade_database(url: str, revision: str) -> None:
    _run_locked(url, lambda config: command.downgrade(config, revision))


def ensure_database(url: str) -> None:
    """Bring the schema at ``url`` to head; idempotent and cheap when it is already there.

    Raises :class:`~auditor.errors.AuditorError` when the database was migrated by a newer auditor
    (a revision this installation does not know): upgrading would fail obscurely, downgrading would lose
    data, so the user has to upgrade the auditor instead.
    """
    heads = set(head_revisions())
    current = set(current_revisions(url))
    if current == heads:
        return
    known = {script.revision for script in ScriptDirectory(str(migrations_dir())).walk_revisions()}
    unknown = current - known
    if unknown:
        raise AuditorError(
            f"the database is at schema revision {', '.join(sorted(unknown))}, which this version of the "
            "auditor does not know; upgrade the auditor (it was migrated by a newer one)",
            details={"database_revisions": sorted(current), "known_heads": sorted(heads)},
        )
    upgrade_database(url)


def _run_locked(url: str, action: Callable[[Config], None]) -> None:
    engine = make_engine(url, migrating=True)
    try:
        with engine.begin() as connection:
            dialect = connection.dialect.name
            if dialect == "postgresql":
                # Transaction-scoped: released by the commit/rollback that ends this block.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY}
                )
            config = alembic_config(url)
            config.attributes["connection"] = connection
            action(config)
            if dialect == "sqlite":
                _check_sqlite_foreign_keys(connection)
    finally:
        engine.dispose()


def _check_sqlite_foreign_keys(connection: Connection) -> None:
    # Migrations run with enforcement off (see make_engine(migrating=True)); verify before committing.
    violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if violations:
        raise AuditorError(
            "migration left rows with dangling foreign keys; rolled back",
            details={"violations": [tuple(row) for row in violations[:20]]},
        )
