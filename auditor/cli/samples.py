"""``auditor samples``: the per-sample evidence of a recorded audit, from the local database or the API.

Local mode (the default) reads the audit's stored tables from ``AUDITOR_DATABASE_URL`` (pyarrow is
imported inside the command); ``--server`` asks the API at ``AUDITOR_API_URL`` instead and imports
nothing heavy (the page comes as JSON, a parquet download is written as received).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from auditor import samples as sample_tables
from auditor.cli.common import fmt, handle_errors, stderr, write_json
from auditor.config import get_settings

# What the table shows per side, under short headers (the JSON and the parquet file have every column).
SHOWN = {
    "synthetic": {
        "index": "index",
        "key": "key",
        "nearest_real_key": "nearest real",
        "nearest_real_distance": "distance",
        "nearest_real_ratio": "ratio",
        "in_real_support": "in support",
        "memorized": "memorized",
        "nearest_synthetic_distance": "twin dist.",
        "duplicate": "duplicate",
        "mode": "mode",
    },
    "real": {
        "index": "index",
        "key": "key",
        "covered": "covered",
        "in_synthetic_manifold": "in synth. manifold",
        "nearest_synthetic_distance": "nearest synth. dist.",
        "tail": "tail",
        "mode": "mode",
    },
}
SHOWN["holdout"] = SHOWN["synthetic"]


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "[bold]yes[/]" if value else "no"
    return escape(fmt(value))


def samples_table(page: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column, header in SHOWN[page["side"]].items():
        table.add_column(header, justify="left" if "key" in column else "right")
    for row in page["items"]:
        table.add_row(*(_cell(row.get(column)) for column in SHOWN[page["side"]]))
    return table


def _local(audit_id: str, query: sample_tables.SampleQuery, parquet: Path | None) -> dict[str, Any]:
    from auditor.cli.common import Database
    from auditor.db import queries

    database = Database(get_settings())
    with database.scope() as session:
        audit = queries.get_audit(session, audit_id)
        table = sample_tables.read_table(session, audit, query.side)
        full_id = audit.id
    if parquet is not None:
        parquet.parent.mkdir(parents=True, exist_ok=True)
        parquet.write_bytes(sample_tables.encode_table(sample_tables.select(table, query)))
    return {"audit_id": full_id, **sample_tables.page(table, query).to_dict()}


def _remote(audit_id: str, query: sample_tables.SampleQuery, parquet: Path | None) -> dict[str, Any]:
    from auditor.cli.service import _client

    params = {"side": query.side, "flag": query.flag, "mode": query.mode, "order": query.order}
    with _client() as client:
        page = dict(client.samples(audit_id, limit=query.limit, cursor=query.cursor, **params))
        if parquet is not None:
            content = client.samples_parquet(audit_id, **params)
            parquet.parent.mkdir(parents=True, exist_ok=True)
            parquet.write_bytes(content)
    return page


@handle_errors
def samples(
    audit_id: Annotated[str, typer.Argument(help="Audit id or a unique prefix (>= 6 characters).")],
    side: Annotated[str, typer.Option(help="synthetic | real | holdout")] = "synthetic",
    flag: Annotated[
        str | None,
        typer.Option(
            help="Only flagged samples: memorized | off_support | duplicate (synthetic, holdout); "
            "uncovered | tail (real)."
        ),
    ] = None,
    mode: Annotated[int | None, typer.Option(min=0, help="Only the samples of this mode.")] = None,
    order: Annotated[
        str,
        typer.Option(
            help="index, nearest_real_distance, nearest_real_ratio, nearest_synthetic_distance, "
            "real_ball_count (real side: index, nearest_synthetic_distance, knn_radius, mode_distance); "
            "- for descending."
        ),
    ] = "index",
    limit: Annotated[int, typer.Option(min=1, max=sample_tables.MAX_LIMIT, help="Rows per page.")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="The next page: the cursor the last one printed.")
    ] = None,
    parquet: Annotated[
        Path | None,
        typer.Option(help="Also write every matching sample (not just this page) here as parquet."),
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the page as JSON (PATH or -).")
    ] = None,
    server: Annotated[
        bool, typer.Option("--server", help="Ask the API at AUDITOR_API_URL, not the local database.")
    ] = False,
) -> None:
    """Which samples make an audit's metrics: memorized copies, samples off the real support,
    duplicates, uncovered and tail real samples (exit 2 for an unknown audit or a bad filter)."""
    query = sample_tables.SampleQuery(
        side=side, flag=flag, mode=mode, order=order, limit=limit, cursor=cursor
    )
    query.check()  # before any database or network
    page = (_remote if server else _local)(audit_id, query, parquet)
    if json_out:
        write_json(page, json_out)
    console = stderr if json_out == "-" else Console()
    if json_out != "-":
        what = (
            f"{side} samples"
            + (f", flag {flag}" if flag else "")
            + (f", mode {mode}" if mode is not None else "")
        )
        console.print(samples_table(page, f"audit {page['audit_id'][:12]}: {what}, by {order}"))
    console.print(f"{len(page['items'])} of {page['total']} shown", highlight=False)
    if page["next_cursor"]:
        console.print(f"next page: --cursor {page['next_cursor']}", highlight=False, markup=False)
    if parquet is not None:
        console.print(f"parquet: {parquet}", highlight=False)
