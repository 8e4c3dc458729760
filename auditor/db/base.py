"""Declarative base, constraint naming convention and the two portable column types.

Every column type here renders the same DDL as a plain ``sa.DateTime(timezone=True)`` / ``sa.JSON``, so
the hand-written migrations use the plain types and ``compare_metadata`` still finds no difference.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

# Deterministic names let migrations drop or alter constraints by name on every backend (SQLite batch
# mode needs them, PostgreSQL would otherwise invent its own).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware datetimes in, timezone-aware UTC datetimes out, on every backend.

    SQLite has no timezone storage: values are normalised to UTC before the offset is dropped, and the
    UTC offset is re-attached on the way out. PostgreSQL returns the session time zone, so results are
    converted back to UTC as well.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive value would be stored as if it were UTC whatever it meant: refuse it loudly.
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def to_strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` and NumPy scalars unwrapped.

    PostgreSQL's ``json`` type rejects the ``NaN``/``Infinity`` tokens Python's encoder writes, and a
    metric can legitimately be NaN; storing ``null`` keeps one document shape on both backends.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dict):
        return {str(key): to_strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_strict_json(item) for item in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return to_strict_json(value.item())
    # Same fallback as the CLI's --json output (dates, paths): a readable string beats a failed commit.
    return str(value)


class StrictJSON(sa.TypeDecorator[Any]):
    """``sa.JSON`` that only ever writes strict JSON (see :func:`to_strict_json`)."""

    impl = sa.JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return to_strict_json(value)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
