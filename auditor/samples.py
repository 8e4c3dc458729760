"""Per-sample evidence as tables: built by the score stage, stored as parquet, filtered and paged.

One table per side (``synthetic``, ``real``, and ``holdout`` given a holdout), one row per sample in the
order of the input, with the columns of :mod:`auditor.pipeline.diagnostics`. The score stage builds them
(:func:`build_tables`) and stores each as ``samples/<side>.parquet`` with the audit; the API
(``GET /v1/audits/{id}/samples``), the CLI (``auditor samples``) and in-process callers read them
through :func:`select` (the whole filtered table, ordered) and :func:`page` (one keyset page).

Filters (:data:`FLAGS`) name the evidence of one metric: ``memorized``, ``off_support`` (outside every
real ball: what lowers precision) and ``duplicate`` on the synthetic and holdout sides, ``uncovered``
(what lowers coverage) and ``tail`` on the real side; ``mode=N`` keeps the samples of one mode. Orders
(:data:`ORDERS`, ``-`` for descending) sort on a distance; ties and the default go by ``index``.

Pages are keyset pages: the cursor holds the last row's position in the order (its sort value, exactly,
and its index), so a page never repeats or skips a row. Non-finite distances (a ratio of ``inf``) are
``null`` in JSON pages and kept as they are in parquet; in an order, NaN sorts after every number and
null after NaN, in both directions.

pyarrow and NumPy are imported inside the functions that use them: the CLI imports this module for its
names and constants.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auditor.errors import (
    ConflictError,
    InvalidCursorError,
    InvalidFilterError,
    NoDiagnosticsError,
    NotComputedError,
)

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from sqlalchemy.orm import Session

    from auditor.db.models import Audit
    from auditor.pipeline.diagnostics import Columns
    from auditor.pipeline.result import Artifact

SIDES = ("synthetic", "real", "holdout")
MEDIA_TYPE = "application/vnd.apache.parquet"
FORMAT_VERSION = "1"  # in each table's metadata; bumped when a column changes meaning
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
NO_MODE = -1  # auditor.pipeline.diagnostics.NO_MODE (that module imports torch)


@dataclass(frozen=True)
class Flag:
    sides: tuple[str, ...]
    column: str
    value: bool  # a row is flagged when its column holds this value
    meaning: str


FLAGS: dict[str, Flag] = {
    "memorized": Flag(("synthetic", "holdout"), "memorized", True, "within tau of a real sample"),
    "off_support": Flag(("synthetic", "holdout"), "in_real_support", False, "outside every real k-NN ball"),
    "duplicate": Flag(("synthetic", "holdout"), "duplicate", True, "within tau of another sample"),
    "uncovered": Flag(("real",), "covered", False, "its k-NN ball holds no synthetic sample"),
    "tail": Flag(("real",), "tail", True, "among the sparsest real samples (largest k-NN radius)"),
}
_SYNTHETIC_ORDERS = ("index", "nearest_real_distance", "nearest_real_ratio", "nearest_synthetic_distance")
ORDERS: dict[str, tuple[str, ...]] = {
    "synthetic": (*_SYNTHETIC_ORDERS, "real_ball_count"),
    "holdout": (*_SYNTHETIC_ORDERS, "real_ball_count"),
    "real": ("index", "nearest_synthetic_distance", "knn_radius", "mode_distance"),
}
ORDER_NAMES = tuple(dict.fromkeys(name for names in ORDERS.values() for name in names))


def artifact_name(side: str) -> str:
    return f"samples/{side}.parquet"


@dataclass(frozen=True)
class SampleQuery:
    """Which rows of one side, in which order; ``cursor``: the ``next_cursor`` of the previous page."""

    side: str = "synthetic"
    flag: str | None = None
    mode: int | None = None
    order: str = "index"
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    @property
    def order_column(self) -> str:
        return self.order.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.order.startswith("-")

    def check(self) -> None:
        """:class:`InvalidFilterError` for a side, flag, order or limit this side does not have."""
        if self.side not in SIDES:
            raise InvalidFilterError(
                f"unknown side {self.side!r}; the sides are {', '.join(SIDES)}", details={"side": self.side}
            )
        if self.flag is not None:
            flag = FLAGS.get(self.flag)
            if flag is None:
                raise InvalidFilterError(
                    f"unknown flag {self.flag!r}; the flags are {', '.join(FLAGS)}",
                    details={"flag": self.flag},
                )
            if self.side not in flag.sides:
                raise InvalidFilterError(
                    f"flag {self.flag!r} is about {' and '.join(flag.sides)} samples, not {self.side}",
                    details={"flag": self.flag, "side": self.side, "sides": list(flag.sides)},
                )
        if self.order_column not in ORDERS[self.side]:
            raise InvalidFilterError(
                f"cannot order {self.side} samples by {self.order_column!r}; use one of "
                f"{', '.join(ORDERS[self.side])} (prefix - for descending)",
                details={"order": self.order, "side": self.side},
            )
        if self.mode is not None and self.mode < 0:
            raise InvalidFilterError(f"mode must be >= 0, got {self.mode}", details={"mode": self.mode})
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidFilterError(
                f"limit must be 1 to {MAX_LIMIT}, got {self.limit}", details={"limit": self.limit}
            )
        _decode_cursor(self)  # InvalidCursorError


# --- building and encoding ----------------------------------------------------------------------------


def build_tables(columns: Mapping[str, Columns], keys: Mapping[str, list[str] | None]) -> dict[str, pa.Table]:
    """One Arrow table per side from the diagnostics' columns and each side's sample keys.

    ``keys[side]``: the key of every input row (None where the dataset cannot name its rows: then the
    key columns are null). The ``*_key`` columns look up the index next to them in the right side's keys.
    """
    import numpy as np
    import pyarrow as pa

    from auditor.pipeline.diagnostics import COLUMNS

    neighbour_side = {"nearest_real": "real", "nearest_synthetic": None}
    tables = {}
    for side, side_columns in columns.items():
        values: dict[str, Any] = dict(side_columns)
        own = keys.get(side)
        values["key"] = own
        for prefix, other in neighbour_side.items():
            if f"{prefix}_key" not in values:
                continue
            index = values.get(f"{prefix}_index")
            lookup = keys.get(other or side)
            values[f"{prefix}_key"] = (
                np.asarray(lookup, dtype=object)[index].tolist()
                if index is not None and lookup is not None
                else None
            )
        n = len(values["index"])
        arrays = []
        schema = COLUMNS[side]
        for name, type_name in schema.items():
            arrow_type = pa.type_for_alias(type_name)
            value = values.get(name)
            arrays.append(pa.nulls(n, arrow_type) if value is None else pa.array(value, type=arrow_type))
        metadata = {"auditor.samples.side": side, "auditor.samples.version": FORMAT_VERSION}
        tables[side] = pa.Table.from_arrays(arrays, names=list(schema)).replace_schema_metadata(metadata)
    return tables


def encode_table(table: pa.Table) -> bytes:
    """The table as parquet bytes (zstd: distances and flags compress several times over)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def decode_table(content: bytes) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(content))


def encode_artifacts(tables: Mapping[str, pa.Table]) -> list[Artifact]:
    from auditor.pipeline.result import Artifact

    return [Artifact(artifact_name(side), MEDIA_TYPE, encode_table(table)) for side, table in tables.items()]


# --- reading ------------------------------------------------------------------------------------------


def _column_computed(table: pa.Table, name: str) -> bool:
    column = table.column(name)
    if name == "mode":
        import pyarrow.compute as pc

        return table.num_rows == 0 or bool(pc.any(pc.not_equal(column, NO_MODE)).as_py())
    return table.num_rows == 0 or column.null_count < table.num_rows


def _require_computed(table: pa.Table, query: SampleQuery) -> None:
    needed = []
    if query.flag is not None:
        needed.append((f"flag={query.flag}", FLAGS[query.flag].column))
    if query.order_column != "index":
        needed.append((f"order={query.order}", query.order_column))
    if query.mode is not None:
        needed.append((f"mode={query.mode}", "mode"))
    for asked, column in needed:
        if not _column_computed(table, column):
            what = "mode metric" if column == "mode" else "k-NN metric"
            raise NotComputedError(
                f"{asked} needs the {column!r} column, which this audit did not compute (no {what} was "
                "requested)",
                details={"column": column},
            )


def _filtered(table: pa.Table, query: SampleQuery) -> pa.Table:
    import pyarrow.compute as pc

    query.check()
    _require_computed(table, query)
    if query.flag is not None:
        flag = FLAGS[query.flag]
        table = table.filter(pc.equal(table.column(flag.column), flag.value))  # nulls are dropped
    if query.mode is not None:
        table = table.filter(pc.equal(table.column("mode"), query.mode))
    return table


def _sort_keys(table: pa.Table, query: SampleQuery) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class, value, index) per row; the order is lexicographic: class 0 numbers, 1 NaN, 2 null."""
    import numpy as np
    import pyarrow.compute as pc

    index = table.column("index").to_numpy().astype(np.int64)
    column = table.column(query.order_column)
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls arrive as NaN
    null = pc.is_null(column).to_numpy(zero_copy_only=False)
    classes = np.where(null, 2, np.where(np.isnan(values), 1, 0)).astype(np.int8)
    values = np.where(classes == 0, values, 0.0)
    if query.descending:
        values = -values
    return classes, values, index


def _decode_cursor(query: SampleQuery) -> tuple[int, float, int] | None:
    if query.cursor is None:
        return None
    try:
        padded = query.cursor + "=" * (-len(query.cursor) % 4)
        order, klass, value, index = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position = (int(klass), float.fromhex(value), int(index))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, OverflowError):
        raise InvalidCursorError(
            "cursor is not one this server issued: pass next_cursor of the previous page unchanged",
            details={"cursor": query.cursor},
        ) from None
    if order != query.order:
        raise InvalidCursorError(
            f"cursor belongs to order={order!r}, not order={query.order!r}", details={"cursor": query.cursor}
        )
    return position


def _encode_cursor(query: SampleQuery, klass: int, value: float, index: int) -> str:
    raw = json.dumps([query.order, klass, float(value).hex(), index], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def select(table: pa.Table, query: SampleQuery) -> pa.Table:
    """Every row of ``table`` that ``query`` filters for, in its order (``limit`` and ``cursor`` are
    not applied: this is the parquet download)."""
    import numpy as np

    table = _filtered(table, query)
    classes, values, index = _sort_keys(table, query)
    return table.take(np.lexsort((index, values, classes)))


@dataclass(frozen=True)
class Page:
    side: str
    total: int  # rows matching the filters, on every page
    items: list[dict[str, Any]]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"side": self.side, "total": self.total, "items": self.items, "next_cursor": self.next_cursor}


def page(table: pa.Table, query: SampleQuery) -> Page:
    """The ``limit`` rows after ``cursor`` in the query's order (JSON-ready: non-finite floats null)."""
    import numpy as np

    table = _filtered(table, query)
    total = table.num_rows
    classes, values, index = _sort_keys(table, query)
    position = _decode_cursor(query)
    if position is not None:
        klass, value, last = position
        after = (classes > klass) | (
            (classes == klass) & ((values > value) | ((values == value) & (index > last)))
        )
        rows = np.flatnonzero(after)
    else:
        rows = np.arange(total)
    chosen = rows[np.lexsort((index[rows], values[rows], classes[rows]))][: query.limit + 1]
    more = len(chosen) > query.limit
    chosen = chosen[: query.limit]
    items = [_json_row(row) for row in table.take(chosen).to_pylist()]
    cursor = None
    if more:
        last_row = int(chosen[-1])
        cursor = _encode_cursor(query, int(classes[last_row]), float(values[last_row]), int(index[last_row]))
    return Page(side=query.side, total=total, items=items, next_cursor=cursor)


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


# --- stored with an audit -----------------------------------------------------------------------------

# Decoded tables by content hash: a client walking the pages of one table must not make every request
# read and parse the whole blob again. Content-addressed, so never stale; bounded by Arrow bytes.
_CACHE_BYTES = 256 << 20
_cache: OrderedDict[str, pa.Table] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(sha256: str) -> pa.Table | None:
    with _cache_lock:
        table = _cache.get(sha256)
        if table is not None:
            _cache.move_to_end(sha256)
        return table


def _remember(sha256: str, table: pa.Table) -> None:
    with _cache_lock:
        if table.nbytes > _CACHE_BYTES:
            return
        _cache[sha256] = table
        while sum(t.nbytes for t in _cache.values()) > _CACHE_BYTES:
            _cache.popitem(last=False)


def require_diagnostics(audit: Audit, side: str) -> None:
    """:class:`ConflictError` unless the audit succeeded; :class:`NoDiagnosticsError` unless it stored
    the side's table."""
    if audit.state != "succeeded" or audit.result is None:
        raise ConflictError(
            f"audit {audit.id} is {audit.state}; its samples exist once it has succeeded",
            details={"state": audit.state},
        )
    info = audit.result.get("diagnostics")
    if not isinstance(info, dict):
        raise NoDiagnosticsError(
            f"audit {audit.id} has no per-sample diagnostics (recorded before they existed)",
            details={"audit_id": audit.id},
        )
    if side not in (info.get("rows") or {}):
        raise NoDiagnosticsError(f"audit {audit.id} has no {side} side", details={"side": side})
    if artifact_name(side) not in (info.get("artifacts") or []):
        raise NoDiagnosticsError(
            f"audit {audit.id} stored no per-sample diagnostics: {info.get('omitted') or 'none were made'}",
            details={"audit_id": audit.id, "omitted": info.get("omitted")},
        )


def read_table(session: Session, audit: Audit, side: str) -> pa.Table:
    """The stored table of one side of a succeeded audit (checked with :func:`require_diagnostics`)."""
    from auditor.db import queries

    require_diagnostics(audit, side)
    name = artifact_name(side)
    stored = queries.audit_artifact(session, audit.id, name)
    if stored is None:
        raise NoDiagnosticsError(f"audit {audit.id} has no stored {name}", details={"artifact": name})
    table = _cached(stored.sha256)
    if table is None:
        table = decode_table(queries.audit_artifact_content(session, audit.id, name) or b"")
        _remember(stored.sha256, table)
    return table


__all__ = [
    "DEFAULT_LIMIT",
    "FLAGS",
    "MAX_LIMIT",
    "MEDIA_TYPE",
    "ORDERS",
    "SIDES",
    "Page",
    "SampleQuery",
    "artifact_name",
    "build_tables",
    "decode_table",
    "encode_artifacts",
    "encode_table",
    "page",
    "read_table",
    "require_diagnostics",
    "select",
]
