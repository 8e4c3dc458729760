"""Alembic migrations, shipped inside the package so a fresh install can migrate its database."""
