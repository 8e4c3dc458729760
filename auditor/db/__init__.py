"""Persistence: SQLAlchemy 2 models, sessions, queries (the only SQL), Alembic migrations."""
