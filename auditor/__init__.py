"""Synthetic-data quality auditor: audit a synthetic dataset against real data."""

__version__ = "0.1.0"

__all__ = ["__version__"]
