"""Typer CLI: thin shells over the pipeline and the database queries."""
