"""Database fixtures (defined in tests/helpers/databases.py so other test folders can import them too)."""

from __future__ import annotations

from helpers.databases import (  # noqa: F401  (fixtures are found by name in this module)
    database_url,
    migrated_database_url,
    postgres_database_url,
    postgres_server,
    session_factory,
)
