"""Alembic environment.

Normally run by :mod:`auditor.db.migrate`, which passes an open connection (inside its transaction and
migration lock) as ``config.attributes["connection"]``. Without one (the ``alembic`` command line with
``-c migrations/alembic.ini``), an engine is created from ``sqlalchemy.url``, falling back to the
configured ``AUDITOR_DATABASE_URL`` / default SQLite file.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from auditor.db import models  # noqa: F401  (registers every table on the metadata)
from auditor.db.base import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from auditor.config import get_settings

    return get_settings().resolved_database_url()


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    from auditor.db.session import make_engine

    engine = make_engine(_url(), migrating=True)
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
